"""The one job runner every kind of job uses (ingestion, pipeline runs, retraining).

* **Claim** (compare-and-set): a worker takes a job that is ``queued``, or ``running`` but released
  (waiting for sub-tasks) or silent for longer than ``JOB_STALE_SECONDS`` (its worker died). Two
  workers handed the same message never both run it: only one ``UPDATE`` matches.
* **Heartbeat**: while the work runs, a thread refreshes ``heartbeat_at`` every ``JOB_HEARTBEAT_SECONDS``.
  If the row says another worker holds the job now, the work is told to stop (``JobLost``).
* **Progress** per stage with rate and ETA, saved at most twice a second, never going backwards
  within a stage; ``check_cancel()`` between units of work.
* **Finish** (compare-and-set): success only if no cancel arrived meanwhile (then it ends cancelled);
  an exception marks the job failed with the error shown; a process that dies leaves it ``running``
  with a stale heartbeat, and the sweeper (:func:`sweep_stale_jobs`, run by every worker at start and
  periodically) puts it back in the queue, where it resumes: each kind of work skips what it finished.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from datetime import timedelta
from typing import Any, Callable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from .models import KIND_TASKS, Job

log = logging.getLogger(__name__)

WAITING = "waiting"  # what work() returns when sub-tasks carry on and will re-enqueue the job
_WORKER: dict[int, str] = {}


class JobCancelled(Exception):
    """Raised by ``check_cancel`` when someone asked the job to stop."""


class JobLost(Exception):
    """The job was taken over by another worker (this one was presumed dead): stop at once."""


class JobFailed(Exception):
    """A clean, explained failure (bad input, ...): the message is shown on the job."""


def worker_id() -> str:
    """host:pid:nonce of this process (new after a fork)."""
    pid = os.getpid()
    if pid not in _WORKER:
        _WORKER[pid] = f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}"
    return _WORKER[pid]


def _stale_cutoff(now=None):
    return (now or timezone.now()) - timedelta(seconds=settings.JOB_STALE_SECONDS)


def _claimable(now=None) -> Q:
    cutoff = _stale_cutoff(now)
    return Q(state=Job.State.QUEUED) | Q(state=Job.State.RUNNING) & (
        Q(worker="") | Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    )


def claim(job_id) -> Job | None:
    """Take the job for this worker, or None when it is finished or held by a live worker."""
    now = timezone.now()
    n = Job.cas(Q(pk=job_id) & _claimable(now), (Job.State.QUEUED, Job.State.RUNNING), Job.State.RUNNING,
                worker=worker_id(), heartbeat_at=now, attempts=F("attempts") + 1,
        error="", finished_at=None, started_at=Coalesce(F("started_at"), now), updated_at=now,
    )
    return Job.objects.get(pk=job_id) if n else None


def _held(job: Job):
    return Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, worker=worker_id())


def _held_q(job: Job) -> Q:
    return Q(pk=job.pk, worker=worker_id())


class Heartbeat(threading.Thread):
    """Refreshes the job's heartbeat from a thread of its own (its own DB connection)."""

    def __init__(self, job: Job) -> None:
        super().__init__(name=f"heartbeat-{job.pk}", daemon=True)
        self.job, self.stop_event, self.lost = job, threading.Event(), False

    def run(self) -> None:
        try:
            while not self.stop_event.wait(settings.JOB_HEARTBEAT_SECONDS):
                try:
                    held = _held(self.job).update(heartbeat_at=timezone.now())
                except Exception:  # a DB hiccup: keep beating, on a fresh connection
                    log.exception("heartbeat of job %s failed; trying again", self.job.pk)
                    connection.close()
                    continue
                if not held:
                    self.lost = True
                    return
        finally:
            connection.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


class JobContext:
    """What ``work(ctx)`` gets: the job, progress, cancellation, results."""

    def __init__(self, job: Job, heartbeat: Heartbeat | None = None) -> None:
        self.job, self._hb = job, heartbeat
        self.after_release: list[Callable[[], Any]] = []  # e.g. sending sub-tasks once the job is released
        self._saved_at = 0.0
        self._stage_start = (job.stage, time.monotonic(), job.progress_current)

    def progress(self, current: int, total: int | None = None, *, stage: str | None = None,
                 force: bool = False, **info: Any) -> None:
        job = self.job
        if stage is not None and stage != job.stage:
            job.stage, force = stage, True
            self._stage_start = (stage, time.monotonic(), int(current))
        elif int(current) < job.progress_current and total in (None, job.progress_total):
            current = job.progress_current  # never backwards within a stage
        job.progress_current = int(current)
        if total is not None:
            job.progress_total = int(total)
        now = time.monotonic()
        done = job.progress_total and job.progress_current >= job.progress_total
        if not (force or done or now - self._saved_at >= 0.5):
            return
        self._saved_at = now
        _, t0, c0 = self._stage_start
        rate = (job.progress_current - c0) / (now - t0) if now > t0 else 0.0
        left = max(job.progress_total - job.progress_current, 0)
        job.progress_info = {**info, "rate": round(rate, 3),
                             "eta_seconds": round(left / rate, 1) if rate > 0 else None}
        self._save(stage=job.stage, progress_current=job.progress_current, progress_total=job.progress_total,
                   progress_info=job.progress_info)

    def check_cancel(self) -> None:
        if self._hb is not None and self._hb.lost:
            raise JobLost(f"job {self.job.pk} is held by another worker now")
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            raise JobCancelled()

    def set_result(self, **values: Any) -> None:
        self.job.result = {**self.job.result, **values}
        self._save(result=self.job.result)

    def _save(self, **fields: Any) -> None:
        if not _held(self.job).update(**fields, heartbeat_at=timezone.now(), updated_at=timezone.now()):
            raise JobLost(f"job {self.job.pk} is held by another worker now")


def finish(job: Job, to: str, *, error: str = "") -> str:
    """CAS the held job into a final state; a success that races a cancel ends cancelled."""
    now = timezone.now()
    fields = {"finished_at": now, "updated_at": now, "worker": "", "error": error[:10000]}
    q = _held_q(job)
    if to == Job.State.SUCCEEDED:
        q &= Q(cancel_requested=False)
    if Job.cas(q, Job.State.RUNNING, to, **fields):
        return to
    if to == Job.State.SUCCEEDED and Job.cas(_held_q(job) & Q(cancel_requested=True), Job.State.RUNNING,
                                             Job.State.CANCELLED, **fields):
        return Job.State.CANCELLED
    log.warning("job %s: could not record %s (taken over by another worker)", job.pk, to)
    return Job.objects.get(pk=job.pk).state


def release(job: Job) -> None:
    """Leave the job running but held by nobody: sub-tasks carry on and will re-enqueue it."""
    _held(job).update(worker="", heartbeat_at=timezone.now(), updated_at=timezone.now())


def run_job(job_id, work: Callable[[JobContext], Any]) -> Job:
    """Claim the job, run ``work(ctx)`` with a heartbeat, record how it ended; see the module docstring.

    ``work`` returns ``WAITING`` to leave the job running for sub-tasks, anything else for success.
    An ``Exception`` marks the job failed (and is re-raised for the log unless it is a JobFailed);
    anything else (a simulated or real death) leaves the job as a dead worker would.
    """
    job = claim(job_id)
    if job is None:
        current = Job.objects.get(pk=job_id)
        log.info("job %s not claimed: %s, worker %r", job_id, current.state, current.worker)
        return current
    hb = Heartbeat(job)
    hb.start()
    ctx = JobContext(job, hb)
    try:
        outcome = work(ctx)
    except JobCancelled:
        finish(job, Job.State.CANCELLED)
    except JobLost as exc:
        log.warning("%s", exc)
    except JobFailed as exc:
        finish(job, Job.State.FAILED, error=str(exc))
    except Exception as exc:
        log.exception("job %s failed", job_id)
        finish(job, Job.State.FAILED, error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
    else:
        if outcome == WAITING:
            release(job)
            for send in ctx.after_release:
                send()
        else:
            finish(job, Job.State.SUCCEEDED)
    finally:
        hb.stop()
    return Job.objects.get(pk=job_id)


def add_event(job_id, what: str, **extra: Any) -> None:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        job.events = [*job.events[-49:], {"at": timezone.now().isoformat(), "what": what, **extra}]
        job.save(update_fields=["events"])


#: kind -> ``stuck(job_id)``: for a released job (held by no worker, waiting for its sub-tasks), whether it
#: is stuck (a sub-task's worker died, or the last one finished without enqueueing the job). A released
#: job of a kind listed here is requeued only when stuck: sub-tasks waiting in the queue (behind a long
#: retraining, say) are not a dead worker. Other kinds are requeued once their heartbeat is stale.
WAIT_CHECKS: dict[str, Callable[[Any], bool]] = {}


#: kind -> ``resend(job_id) -> int``: for a released job nothing has moved in for ``JOB_RESEND_SECONDS``,
#: send the tasks of its unfinished sub-tasks again (their messages may be lost) and say how many.
RESEND_SUBTASKS: dict[str, Callable[[Any], int]] = {}


def _waiting_fine(job: Job) -> bool:
    check = WAIT_CHECKS.get(job.kind)
    return not job.worker and check is not None and not check(job.pk)


def sweep_stale_jobs() -> list[str]:
    """Requeue running jobs whose worker stopped beating; CAS, so concurrent sweepers requeue each once."""
    now = timezone.now()
    cutoff = _stale_cutoff(now)
    stale = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, updated_at__lt=cutoff)
    requeued = []
    for job in Job.objects.filter(stale, state=Job.State.RUNNING, kind__in=list(KIND_TASKS)).only(
            "id", "worker", "kind"):
        if _waiting_fine(job):
            continue
        with transaction.atomic():
            if not Job.cas(Q(pk=job.pk, worker=job.worker) & stale, Job.State.RUNNING, Job.State.QUEUED,
                           worker="", recoveries=F("recoveries") + 1, updated_at=now):
                continue
            fresh = Job.objects.get(pk=job.pk)
            add_event(job.pk, "requeued: worker stopped beating", worker=job.worker)
            fresh.enqueue()
        requeued.append(str(job.pk))
        log.warning("job %s requeued: its worker %s stopped beating", job.pk, job.worker or "?")
    return requeued


def lost_messages(older_than: float) -> list[Job]:
    """Queued jobs no worker took within ``older_than`` seconds: their message was lost (the web process
    died between commit and send, the broker restarted without persistence, or a worker was killed holding
    it unacked: invisible for the broker's visibility timeout). An upload still storing its files is not lost."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    rows = Job.objects.filter(state=Job.State.QUEUED, updated_at__lt=cutoff, kind__in=list(KIND_TASKS))
    return [j for j in rows.only("id", "kind", "params", "updated_at") if not (j.params or {}).get("receiving")]


def resend_lost_jobs(older_than: float | None = None) -> list[str]:
    """Send the task of each job of :func:`lost_messages` again (``JOB_RESEND_SECONDS`` by default), and the
    sub-tasks of released jobs nothing moved in for as long. Safe when a message was only slow: claims are
    compare-and-set, so the second copy finds the work taken and does nothing. Compare-and-set on
    ``updated_at``, so concurrent sweepers send each once."""
    older_than = settings.JOB_RESEND_SECONDS if older_than is None else older_than
    sent = []
    for job in lost_messages(older_than):
        with transaction.atomic():
            if not Job.objects.filter(pk=job.pk, state=Job.State.QUEUED, updated_at=job.updated_at).update(
                    updated_at=timezone.now()):
                continue
            waited = (timezone.now() - job.updated_at).total_seconds()
            add_event(job.pk, "re-sent: no worker took it", waited_seconds=round(waited, 1))
            Job.objects.get(pk=job.pk).enqueue()
        sent.append(str(job.pk))
        log.warning("job %s re-sent: queued %.0f s and no worker took it (message lost?)", job.pk, waited)
    return sent + _resend_quiet_subtasks(older_than)


def _resend_quiet_subtasks(older_than: float) -> list[str]:
    """Released jobs (waiting for sub-tasks) in which nothing moved for ``older_than`` seconds: their kind's
    :data:`RESEND_SUBTASKS` hook sends the unfinished sub-tasks again, once per quiet spell (CAS on
    ``updated_at``). Not a recovery: the job stays as it is, with an event saying what was sent."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than)
    quiet = Q(state=Job.State.RUNNING, worker="", kind__in=list(RESEND_SUBTASKS), heartbeat_at__lt=cutoff,
              updated_at__lt=cutoff)
    sent = []
    for job in Job.objects.filter(quiet).only("id", "kind", "updated_at"):
        with transaction.atomic():
            if not Job.objects.filter(Q(pk=job.pk, updated_at=job.updated_at) & quiet).update(updated_at=now):
                continue
            n = RESEND_SUBTASKS[job.kind](job.pk)
            if n:
                add_event(job.pk, f"re-sent {n} sub-task(s): nothing moved in {older_than:.0f} s")
        if n:
            sent.append(str(job.pk))
            log.warning("job %s: re-sent %d sub-task(s), nothing moved in %.0f s (messages lost?)", job.pk, n,
                        older_than)
    return sent


class KeepAlive:
    """Bumps a receiving upload job's ``updated_at`` every few seconds while the web process stores its files,
    so :func:`sweep_interrupted_uploads` tells a long upload from one whose web process died."""

    EVERY = 5.0

    def __init__(self, job: Job) -> None:
        self.job, self.last = job, time.monotonic()

    def touch(self) -> None:
        if time.monotonic() - self.last >= self.EVERY:
            Job.objects.filter(pk=self.job.pk).update(updated_at=timezone.now())
            self.last = time.monotonic()


def sweep_interrupted_uploads() -> list[str]:
    """Cancel upload jobs still "receiving" (their files never all stored: the web process died or was killed
    mid-upload) and silent for longer than ``JOB_STALE_SECONDS``: a queued job no worker was ever told of
    would otherwise block runs of its dataset for good. Its stored files stay with it; re-running the job
    detects them."""
    now = timezone.now()
    silent = Q(kind=Job.Kind.INGEST_UPLOAD, params__receiving=True, updated_at__lt=_stale_cutoff(now))
    done = []
    for pk in Job.objects.filter(silent, state=Job.State.QUEUED).values_list("pk", flat=True):
        if Job.cas(Q(pk=pk) & silent, Job.State.QUEUED, Job.State.CANCELLED, finished_at=now, updated_at=now,
                   error="the upload was interrupted before all its files were stored (the web process stopped); "
                         "re-run this job to detect the files that were stored, or upload again"):
            add_event(pk, "cancelled: upload interrupted")
            done.append(str(pk))
            log.warning("upload job %s cancelled: interrupted while receiving", pk)
    return done


class Sweeper(threading.Thread):
    """Runs :func:`sweep_stale_jobs`, :func:`sweep_interrupted_uploads` and :func:`resend_lost_jobs` at start
    and every ``JOB_SWEEP_SECONDS`` in a worker process."""

    def __init__(self) -> None:
        super().__init__(name="job-sweeper", daemon=True)
        self.stop_event = threading.Event()

    def run(self) -> None:
        while True:
            try:
                sweep_stale_jobs()
                sweep_interrupted_uploads()
                resend_lost_jobs()
            except Exception:
                log.exception("job sweep failed")
            finally:
                connection.close()
            if self.stop_event.wait(settings.JOB_SWEEP_SECONDS):
                return
