"""Background work as rows: one Job per ingestion, pipeline run or retraining.

A job moves through an explicit state machine::

    queued -> running -> succeeded | failed | cancelled
    queued -> cancelled
    running -> queued       (the sweeper: its worker stopped beating; the job resumes elsewhere)
    failed | cancelled -> queued   (an explicit re-run)

Every state change a worker makes is compare-and-set (``UPDATE ... WHERE state = old AND worker = me``),
done by the one job runner (:mod:`facecurate.jobs.runner`): claiming, heartbeats, progress with rate and
ETA, cancellation between units of work, failure with the error shown, and requeueing jobs whose worker
died. Progress is ``progress_current`` of ``progress_total`` within the current ``stage``.

Adding a kind of job: add its name to ``Job.Kind`` (no DB-level choices, no migration), register its
Celery task name in ``KIND_TASKS`` (re-runs and the sweeper use it), create the row and call
``job.enqueue()`` inside the request's transaction; the task calls ``runner.run_job(job_id, work)``
where ``work(ctx)`` reports with ``ctx.progress(...)`` and calls ``ctx.check_cancel()`` between units of
work. GPU-heavy tasks are named ``facecurate.ml.<...>`` so CELERY_TASK_ROUTES sends them to "gpu".
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone


class InvalidTransition(Exception):
    pass


class Job(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Kind(models.TextChoices):
        INGEST_UPLOAD = "ingest_upload"
        INGEST_IMPORT = "ingest_import"
        INGEST_MANIFEST = "ingest_manifest"
        PIPELINE_RUN = "pipeline_run"
        RETRAIN = "retrain"

    #: The one place for the state rules: ``transition`` (one row in memory) and ``cas`` (an UPDATE, what
    #: the runner, the sweeper, cancel and re-run use) both refuse a move that is not listed here.
    TRANSITIONS = {
        State.QUEUED: {State.RUNNING, State.CANCELLED},
        State.RUNNING: {State.RUNNING, State.QUEUED, State.SUCCEEDED, State.FAILED, State.CANCELLED},
        State.SUCCEEDED: set(),
        State.FAILED: {State.QUEUED},
        State.CANCELLED: {State.QUEUED},
    }
    TERMINAL = {State.SUCCEEDED, State.FAILED, State.CANCELLED}

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=40)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED, db_index=True)
    stage = models.CharField(max_length=40, blank=True, default="")
    progress_current = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    progress_info = models.JSONField(default=dict, blank=True, help_text="Rate (units/s), ETA (s) and extras.")
    error = models.TextField(blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    dataset = models.ForeignKey(
        "datasets.Dataset", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    task_id = models.CharField(max_length=64, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True, default="",
                              help_text="host:pid:nonce of the worker holding the job; empty when none does.")
    heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True,
                                        help_text="Last sign of life of the worker holding the job.")
    recoveries = models.PositiveIntegerField(default=0, help_text="Times the job was requeued after its worker died.")
    events = models.JSONField(default=list, blank=True, help_text="Notable events: recoveries, re-runs, cancels.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["dataset", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} [{self.state}]"

    @property
    def is_terminal(self) -> bool:
        return self.state in self.TERMINAL

    def can_transition(self, to: str) -> bool:
        return to in self.TRANSITIONS[self.State(self.state)]

    @classmethod
    def check_transition(cls, frm: str, to: str) -> None:
        if to not in cls.TRANSITIONS[cls.State(frm)]:
            raise InvalidTransition(f"a job cannot go {frm} -> {to}")

    @classmethod
    def cas(cls, filters: models.Q, frm, to: str, **fields) -> int:
        """Compare-and-set: ``UPDATE ... SET state = to WHERE filters AND state IN frm``; the number of rows
        changed (0: another process got there first). Every ``frm -> to`` must be in TRANSITIONS."""
        frm = [frm] if isinstance(frm, str) else list(frm)
        for f in frm:
            cls.check_transition(f, to)
        return cls.objects.filter(filters, state__in=frm).update(state=to, **fields)

    def transition(self, to: str, *, error: str = "", save: bool = True) -> None:
        """Move to state ``to`` or raise InvalidTransition; sets timestamps and error."""
        if not self.can_transition(to):
            raise InvalidTransition(f"job {self.id}: {self.state} -> {to} is not allowed")
        now = timezone.now()
        if to == self.State.RUNNING:
            if self.state != self.State.RUNNING:
                self.started_at = now
            self.attempts += 1
            self.finished_at = None
            self.error = ""
        elif to == self.State.QUEUED:
            self.started_at = None
            self.finished_at = None
            self.error = ""
            self.cancel_requested = False
        else:
            self.finished_at = now
        if error:
            self.error = error
        self.state = to
        if save:
            self.save()

    def enqueue(self, task=None, *args) -> None:
        """Send ``task(job_id, *args)`` once the surrounding transaction commits (task id stored now).

        ``task`` is a Celery task or a task name; by default the task registered for ``kind``.
        """
        from celery import current_app as app  # the project's app (facecurate/__init__ loads it)

        task = task or KIND_TASKS[self.kind]
        self.task_id = str(uuid.uuid4())
        self.save(update_fields=["task_id", "updated_at"])
        job_id, task_id = str(self.id), self.task_id
        if isinstance(task, str):
            name = task
            transaction.on_commit(lambda: app.send_task(name, args=[job_id, *args], task_id=task_id))
        else:
            transaction.on_commit(lambda: task.apply_async(args=[job_id, *args], task_id=task_id))


#: The Celery task that does each kind of job (re-runs and the dead-worker sweeper use it).
KIND_TASKS: dict[str, str] = {
    Job.Kind.INGEST_UPLOAD: "facecurate.datasets.tasks.ingest_job",
    Job.Kind.INGEST_IMPORT: "facecurate.datasets.tasks.ingest_job",
    Job.Kind.INGEST_MANIFEST: "facecurate.datasets.tasks.ingest_job",
    Job.Kind.PIPELINE_RUN: "facecurate.runs.tasks.advance_run",
    Job.Kind.RETRAIN: "facecurate.ml.retrain",
}
