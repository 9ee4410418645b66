"""Real Celery worker processes for tests, on a broker of their own (so the in-thread session worker
never takes their tasks), sharing the test database, media and artifact folders."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

from tests.conftest import ROOT


def database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def redis_available(url: str = "redis://127.0.0.1:6379/12") -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


class Workers:
    """Start/stop worker processes; ``send`` enqueues a task on their broker."""

    def __init__(self, tmp: Path, broker: str, settings, **env: str) -> None:
        self.tmp, self.procs, self.logs = tmp, [], []
        self.var = tmp / "worker-var"
        self.env = {
            **os.environ, "PYTHONUNBUFFERED": "1", "FACECURATE_DATABASE_URL": database_url(),
            "FACECURATE_VAR_DIR": str(self.var), "FACECURATE_SECRET_KEY": "test-worker",
            "FACECURATE_MEDIA_ROOT": str(settings.MEDIA_ROOT), "FACECURATE_ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT),
            "FACECURATE_IMPORT_ROOT": str(settings.IMPORT_ROOT), "FACECURATE_JOB_HEARTBEAT_SECONDS": "0.5",
            "FACECURATE_JOB_STALE_SECONDS": "3", "FACECURATE_JOB_SWEEP_SECONDS": "1",
            "FACECURATE_JOB_RESEND_SECONDS": "15",
            "PYTHONFAULTHANDLER": "1", **env,  # SIGABRT dumps every thread's stack into the log
        }
        if broker == "redis":
            self.env["FACECURATE_BROKER_URL"] = "redis://127.0.0.1:6379/12"
            self._purge()
        else:
            self.env.pop("FACECURATE_BROKER_URL", None)
        self.broker = broker

    def _purge(self) -> None:
        import redis

        redis.Redis.from_url(self.env["FACECURATE_BROKER_URL"]).flushdb()

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "facecurate", "worker", "-Q", "default,gpu", "--pool", "solo",
             "-n", f"{name}@%h", "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.logs.append(self.tmp / f"{name}.log")
        return proc

    def start_ready(self, name: str, timeout: float = 120) -> subprocess.Popen:
        """A worker that has said it is ready. One that stays silent for ``timeout`` seconds (seen once in
        CI: an empty log after a SIGKILL of its predecessor, never here) has its stacks dumped into the
        test's warnings and is replaced by one more, so the next such case says where it hung."""
        for attempt in range(2):
            label = name if attempt == 0 else f"{name}-again"
            proc = self.start(label)
            log = self.tmp / f"{label}.log"
            try:
                wait_until(lambda p=proc, f=log: p.poll() is not None or "ready." in f.read_text(), timeout, "")
            except AssertionError:
                pass
            if proc.poll() is None and "ready." in log.read_text():
                return proc
            self.dump(proc, f"worker {label} did not start in {timeout} s")
        raise AssertionError(f"no worker {name} started\n{self.log_text()}")

    def dump(self, proc: subprocess.Popen, why: str) -> None:
        """End a stuck worker with SIGABRT (faulthandler writes every thread's stack to its log) and show
        that log as a test warning."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=30)
        log = self.logs[self.procs.index(proc)]
        warnings.warn(f"{why} (exit {proc.returncode}):\n{log.read_text()[-8000:]}", stacklevel=3)

    def state_text(self, job_id) -> str:
        """What a stuck job looks like from outside: its row, its run's chunks, the broker's queues and
        clients, the database's sessions and waiting locks, and every Python process on the machine."""
        from django.db import connection

        from facecurate.jobs.models import Job
        from facecurate.runs.models import EmbedChunk

        job = Job.objects.filter(pk=job_id).values("state", "worker", "stage", "heartbeat_at", "updated_at",
                                                   "task_id", "recoveries", "attempts", "events").first()
        out = [f"job: {job}"]
        out += [f"chunk: {c}" for c in EmbedChunk.objects.filter(run__job_id=job_id).values(
            "id", "state", "worker", "claimed_at", "attempts")]
        if self.broker == "redis":
            import redis

            r = redis.Redis.from_url(self.env["FACECURATE_BROKER_URL"])
            db = str(r.connection_pool.connection_kwargs.get("db", 0))
            out += [f"redis keys: {[(k, r.type(k)) for k in r.keys()]}",
                    f"redis queues: default={r.llen('default')} gpu={r.llen('gpu')} unacked={r.hlen('unacked')}"]
            out += [f"redis client: { {k: c.get(k) for k in ('addr', 'age', 'idle', 'flags', 'cmd', 'sub')} }"
                    for c in r.client_list() if c.get("db") == db]
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute("SELECT pid, datname, client_port, state, wait_event_type, wait_event, "
                            "now() - backend_start, now() - xact_start, left(query, 100) FROM pg_stat_activity")
                out += [f"pg: {row}" for row in cur.fetchall()]
                cur.execute("SELECT pid, locktype, relation::regclass, mode FROM pg_locks WHERE NOT granted")
                out += [f"pg lock waited for: {row}" for row in cur.fetchall()]
        ps = subprocess.run(["ps", "-eo", "pid,ppid,stat,etime,args"], capture_output=True, text=True).stdout
        out += [f"ps: {line}" for line in ps.splitlines() if "python" in line or "postgres" in line]
        return "\n".join(out)

    def send(self, task: str, *args) -> None:
        """Send a task as the web process would, on these workers' broker."""
        code = ("import django, sys; django.setup(); from facecurate.celery import app; "
                f"app.send_task({task!r}, args={list(args)!r})")
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**self.env, "DJANGO_SETTINGS_MODULE":
                       "facecurate.settings"}, check=True, timeout=120)

    def kill(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in self.logs if p.exists())


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
