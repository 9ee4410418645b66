"""Typed environment helpers fail loudly, naming the variable and the bad value."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from facecurate.env import (
    check_broker_url,
    env_bool,
    env_int,
    env_list,
    env_path,
    env_str,
    parse_database_url,
)

ROOT = Path(__file__).resolve().parents[2]


def test_bool_values():
    assert env_bool("X", True, environ={}) is True
    assert env_bool("X", True, environ={"X": "off"}) is False
    assert env_bool("X", False, environ={"X": " Yes "}) is True
    assert env_bool("X", False, environ={"X": ""}) is False
    with pytest.raises(ImproperlyConfigured, match=r"X='maybe'"):
        env_bool("X", False, environ={"X": "maybe"})


def test_int_values_and_bounds():
    assert env_int("N", 5, environ={}) == 5
    assert env_int("N", 5, environ={"N": "12"}) == 12
    with pytest.raises(ImproperlyConfigured, match=r"N='12MB'.*integer"):
        env_int("N", 5, environ={"N": "12MB"})
    with pytest.raises(ImproperlyConfigured, match=r">= 1"):
        env_int("N", 5, min_value=1, environ={"N": "0"})
    with pytest.raises(ImproperlyConfigured, match=r"<= 10"):
        env_int("N", 5, max_value=10, environ={"N": "11"})


def test_list_and_str_and_path(tmp_path):
    assert env_list("L", ["a"], environ={}) == ["a"]
    assert env_list("L", [], environ={"L": "x.org, y.org"}) == ["x.org", "y.org"]
    with pytest.raises(ImproperlyConfigured, match="L="):
        env_list("L", [], environ={"L": "x.org,,y.org"})
    assert env_str("S", "d", environ={"S": "  "}) == "d"
    assert env_path("P", tmp_path, environ={}) == tmp_path
    with pytest.raises(ImproperlyConfigured, match="absolute"):
        env_path("P", tmp_path, environ={"P": "relative/dir"})
    with pytest.raises(ImproperlyConfigured, match="existing"):
        env_path("P", tmp_path, must_exist=True, environ={"P": str(tmp_path / "missing")})


def test_database_urls():
    pg = parse_database_url("postgres://alice:s%40cret@db.example:6543/faces?sslmode=require")
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "alice", "s@cret", "db.example", "6543", "faces")
    assert pg["OPTIONS"] == {"sslmode": "require"}
    assert parse_database_url("postgresql://postgres@127.0.0.1/x")["PORT"] == ""
    lite = parse_database_url("sqlite:////tmp/x.sqlite3")
    assert lite["ENGINE"].endswith("sqlite3") and lite["NAME"] == "/tmp/x.sqlite3"
    for bad in ("mysql://a@b/c", "postgres://a@b/", "postgres://a@b:port/c", "sqlite://", "nonsense"):
        with pytest.raises(ImproperlyConfigured, match="FACECURATE_DATABASE_URL"):
            parse_database_url(bad)


def test_broker_urls():
    assert check_broker_url("redis://127.0.0.1:6379/0").startswith("redis")
    with pytest.raises(ImproperlyConfigured, match="FACECURATE_BROKER_URL='http://x'"):
        check_broker_url("http://x")


def _load_settings(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FACECURATE_")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import facecurate.settings as s; print(s.DEBUG, s.MAX_UPLOAD_MB, s.DATABASES['default']['ENGINE'])"],
        cwd=ROOT, env={**clean, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
    )


def test_settings_module_fails_loudly_on_bad_values():
    bad = _load_settings(FACECURATE_MAX_UPLOAD_MB="lots")
    assert bad.returncode != 0
    assert "FACECURATE_MAX_UPLOAD_MB='lots'" in bad.stderr
    bad_debug = _load_settings(FACECURATE_DEBUG="maybe")
    assert bad_debug.returncode != 0 and "FACECURATE_DEBUG='maybe'" in bad_debug.stderr


def test_settings_embedded_default():
    ok = _load_settings()
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["False", "512", "django.db.backends.sqlite3"]  # debug off unless asked for
