# facecurate: `make run` starts the whole product on this machine; `make test` runs the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install run test test-fast schema clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

run: install
	bin/run

test: install
	bin/test

test-fast: install
	bin/test -m "not slow"

schema: install
	$(PY) manage.py spectacular --file facecurate/openapi.yaml

clean:
	rm -rf var/ staticfiles/ .pytest_cache/
