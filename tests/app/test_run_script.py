"""`make run` (bin/run) starts the "default" and "gpu" queues in separate worker processes (bin/worker),
each of which can be restarted alone; a stand-in Python records what the scripts run."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_run_starts_one_worker_process_per_queue(tmp_path):
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    # The stand-in web server waits (at most 20 s) until both workers have started, then exits.
    fake.write_text(f'#!/usr/bin/env bash\necho "$$ $*" >> "{log}"\n'
                    f'if [[ "$*" == *gunicorn* ]]; then for i in $(seq 200); do\n'
                    f'  [ "$(grep -c " worker " "{log}")" -ge 2 ] && break; sleep 0.1; done; fi\n')
    fake.chmod(0o755)
    subprocess.run(["bin/run"], cwd=ROOT, env={**os.environ, "PY": str(fake)}, check=True, timeout=60,
                   capture_output=True)
    calls = log.read_text().splitlines()
    workers = [c for c in calls if " -m celery " in c and " worker " in c]
    queues = sorted(c.split(" -Q ")[1].split()[0] for c in workers)
    assert queues == ["default", "gpu"], calls  # two processes, one queue each
    assert len({c.split()[0] for c in workers}) == 2
    assert all("--pool solo" in c for c in workers)
    assert any("gunicorn" in c for c in calls)


def test_a_worker_restarts_alone_and_names_its_pid_file(tmp_path):
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(f'#!/usr/bin/env bash\necho "$$ $*" >> "{log}"\n')
    fake.chmod(0o755)
    subprocess.run(["bin/worker", "gpu"], cwd=ROOT, env={**os.environ, "PY": str(fake)}, check=True, timeout=30)
    pid, *argv = log.read_text().split()
    assert (ROOT / "var" / "worker-gpu.pid").read_text().strip() == pid  # exec: the pid file names the worker
    assert argv[argv.index("-Q") + 1] == "gpu"
    assert subprocess.run(["bin/worker", "both"], cwd=ROOT, capture_output=True).returncode == 2
