"""The Celery application: configured from Django settings (namespace CELERY), tasks autodiscovered.

Run a worker with ``celery -A facecurate worker -Q default,gpu`` (embedded default, one machine).
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "facecurate.settings")

app = Celery("facecurate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


from celery.signals import worker_ready, worker_shutting_down  # noqa: E402

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
