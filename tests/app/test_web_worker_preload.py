"""Issue 17 item 10: a review action imports nothing while it holds its locks.

The first action that moved faces in each web worker imported the priority rule (pipeline.uncertainty,
which imports torch: seconds) inside its transaction, holding SQLite's write lock (PostgreSQL: the
cluster's row lock) while every other annotator's lease, confirm and release POST waited. The web
server's worker start (gunicorn.conf.py ``post_worker_init``) now imports it first. Checked in a fresh
interpreter: after the hook, computing a cluster's priority as the review service does imports no module."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = r"""
import json, runpy, sys, types
import django
django.setup()
hooks = runpy.run_path("gunicorn.conf.py")
hooks["post_worker_init"](None)
before = set(sys.modules)
from facecurate.runs.services.priority import members_priority
p = members_priority(types.SimpleNamespace(uncertainty_report={}), [0.1, 0.7, None])
print(json.dumps({"new": sorted(m for m in set(sys.modules) - before if not m.startswith("encodings")),
                  "priority": p}))
"""


def test_after_the_worker_hook_a_priority_update_imports_nothing(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "facecurate.settings", "FACECURATE_VAR_DIR": str(tmp_path),
           "FACECURATE_SECRET_KEY": "test-preload", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["priority"] > 0
    assert got["new"] == [], got["new"][:20]  # e.g. torch, pipeline.uncertainty on the old code
