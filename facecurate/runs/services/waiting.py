"""A pipeline run that waits for its embedding chunks, as the job sweeper sees it.

* :func:`run_stuck` (``facecurate.jobs.runner.WAIT_CHECKS``): chunks waiting in the queue are not stuck;
  a chunk whose worker stopped beating is, and so are chunks all done with the run left waiting (its last
  enqueue lost). The sweeper then requeues the run.
* :func:`resend_pending_chunks` (``facecurate.jobs.runner.RESEND_SUBTASKS``): when nothing has moved for
  ``JOB_RESEND_SECONDS`` and no chunk is held, the pending chunks' messages may be lost (a worker killed
  after taking a chunk's message and before claiming the chunk holds it unacked: hidden for the broker's
  visibility timeout, hours on Redis): their tasks are sent again. A copy of a message that was only slow
  finds its chunk claimed and does nothing."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import EmbedChunk, PipelineRun


def run_stuck(job_id) -> bool:
    run = PipelineRun.objects.filter(job_id=job_id).first()
    if run is None:
        return True
    chunks = EmbedChunk.objects.filter(run=run)
    if not chunks.exclude(state=EmbedChunk.State.DONE).exists():
        return True
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)
    return chunks.filter(state=EmbedChunk.State.RUNNING, claimed_at__lt=cutoff).exists()


def resend_pending_chunks(job_id) -> int:
    """Send the tasks of the run's pending chunks again (on commit) unless a chunk is held; how many."""
    from .orchestrate import EMBED_TASK

    run = PipelineRun.objects.filter(job_id=job_id).first()
    if run is None:
        return 0
    chunks = EmbedChunk.objects.filter(run=run)
    if chunks.filter(state=EmbedChunk.State.RUNNING).exists():  # held: its worker beats, or run_stuck sees it
        return 0
    from facecurate.celery import app

    pending = list(chunks.filter(state=EmbedChunk.State.PENDING).order_by("id").values_list("id", flat=True))
    for chunk_id in pending:
        transaction.on_commit(lambda c=chunk_id: app.send_task(EMBED_TASK, args=[c]))
    return len(pending)
