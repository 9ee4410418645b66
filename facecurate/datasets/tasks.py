"""Celery tasks for ingestion: they only orchestrate (the job runner records state and failures)."""
from __future__ import annotations

from celery import shared_task

from .services.ingest_job import run_ingest_job


@shared_task(name="facecurate.datasets.tasks.ingest_job", acks_late=True, reject_on_worker_lost=True)
def ingest_job(job_id: str) -> str:
    """Accept (for imports) and detect/align/thumbnail every pending image of an ingestion job."""
    return run_ingest_job(job_id).state
