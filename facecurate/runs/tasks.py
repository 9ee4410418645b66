"""Celery tasks of pipeline runs: they only orchestrate (services do the work, the runner the state)."""
from __future__ import annotations

from celery import shared_task

from facecurate.jobs.runner import run_job

from .services.orchestrate import advance_work, embed_chunk as embed_chunk_service


@shared_task(name="facecurate.runs.tasks.advance_run", acks_late=True, reject_on_worker_lost=True)
def advance_run(job_id: str) -> str:
    """Run the next stages of a pipeline run (queue "default"; embedding fans out to "gpu")."""
    return run_job(job_id, advance_work).state


@shared_task(name="facecurate.ml.embed_chunk", acks_late=True, reject_on_worker_lost=True)
def embed_chunk(chunk_id: int) -> str:
    """Embed one chunk of faces with the run's recognizer version (queue "gpu")."""
    return embed_chunk_service(chunk_id)
