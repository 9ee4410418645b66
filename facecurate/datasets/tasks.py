"""Celery tasks for ingestion: they only orchestrate (load the job, call the service, record failure)."""
from __future__ import annotations

import logging
import traceback

from celery import shared_task

from .services import ingest

log = logging.getLogger(__name__)


@shared_task(name="facecurate.datasets.tasks.ingest_job", acks_late=True, reject_on_worker_lost=True)
def ingest_job(job_id: str) -> str:
    """Accept (for imports) and detect/align/thumbnail every pending face of an ingestion job."""
    try:
        job = ingest.run_ingest_job(job_id)
    except Exception as exc:  # the job records the failure; the traceback goes to the log
        log.exception("ingest job %s failed", job_id)
        ingest.mark_failed(job_id, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        raise
    return job.state
