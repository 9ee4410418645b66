"""Is a pipeline run that waits for its embedding chunks stuck? (The job sweeper asks; see
``facecurate.jobs.runner.WAIT_CHECKS``.) Chunks waiting in the queue are not: only a chunk whose worker
stopped beating, or chunks all done with the run left waiting (its last enqueue lost), are."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
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
