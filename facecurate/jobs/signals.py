"""Worker signal handlers: every Celery worker runs the job sweeper (connected in ``JobsConfig.ready``)."""
from __future__ import annotations

from celery.signals import worker_ready, worker_shutting_down

_sweeper = None


@worker_ready.connect
def start_job_sweeper(**_kwargs):
    """Every worker requeues jobs whose worker died: at start, then every JOB_SWEEP_SECONDS."""
    global _sweeper
    from facecurate.jobs.runner import Sweeper

    _sweeper = Sweeper()
    _sweeper.start()


@worker_shutting_down.connect
def stop_job_sweeper(**_kwargs):
    if _sweeper is not None:
        _sweeper.stop_event.set()
