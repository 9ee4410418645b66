"""Celery task of retraining jobs (named facecurate.ml.*: it runs on the "gpu" queue)."""
from __future__ import annotations

from celery import shared_task

from facecurate.jobs.runner import run_job

from .services.retrain import retrain_work


@shared_task(name="facecurate.ml.retrain", acks_late=True, reject_on_worker_lost=True)
def retrain(job_id: str) -> str:
    """Gather the training set, train (resuming from the job's checkpoint), make and evaluate a version."""
    return run_job(job_id, retrain_work).state
