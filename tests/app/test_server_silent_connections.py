"""Issue 17 item 10: the web server `make run` starts is not held by connections that send nothing.

Browsers open speculative connections before they need them, and a page being left sends its
lease-release POST on whatever socket it has. With gunicorn's sync workers (the old `bin/run`: two of
them) each silent socket held a whole worker until the browser closed it, and every other request
waited: cluster pages hung for a minute. The test takes the exact gunicorn command line `bin/run` runs
(a stand-in Python records it), starts that server, holds more silent connections than it has worker
processes, and asks for /healthz: it must be answered while they are still open (with sync workers it
never is, however long one waits)."""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin_run_gunicorn_argv(tmp_path) -> list[str]:
    """The arguments `bin/run` gives Python for the web server (a stand-in Python records every call)."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%q " "$@" >> "{log}"; echo >> "{log}"\n')
    fake.chmod(0o755)
    subprocess.run(["bin/run"], cwd=ROOT, env={**os.environ, "PY": str(fake)}, check=True, timeout=60,
                   capture_output=True)
    calls = [shlex.split(line) for line in log.read_text().splitlines()]
    (argv,) = [c for c in calls if c[:2] == ["-m", "gunicorn"]]
    return argv


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the web server exited"
        try:
            urllib.request.urlopen(url + "/healthz", timeout=5)
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the web server did not come up")


@pytest.fixture
def server(tmp_path):
    argv = _bin_run_gunicorn_argv(tmp_path)
    port = _free_port()
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
    env = {**os.environ, "FACECURATE_VAR_DIR": str(tmp_path / "var"), "FACECURATE_SECRET_KEY": "test-server"}
    env.pop("FACECURATE_DATABASE_URL", None)  # its own SQLite file: /healthz only runs SELECT 1
    log = open(tmp_path / "gunicorn.log", "w")
    proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, proc)
        yield argv, port, url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def _workers(argv: list[str]) -> int:
    if "--workers" in argv:
        return int(argv[argv.index("--workers") + 1])
    return int(os.environ.get("FACECURATE_WEB_WORKERS", "2"))  # gunicorn.conf.py's default


def test_silent_connections_do_not_hold_the_server(server):
    argv, port, url = server
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(_workers(argv) + 2)]
    try:
        time.sleep(0.5)  # the server has accepted them (a sync worker now waits in recv() on each)
        # Answered while every silent connection is still open; a held server never answers (the
        # generous limit is for a loaded machine, not a latency bound).
        with urllib.request.urlopen(url + "/healthz", timeout=90) as resp:
            assert resp.status == 200
    finally:
        for s in silent:
            s.close()
