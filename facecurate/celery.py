"""The Celery application: configured from Django settings (namespace CELERY), tasks autodiscovered.

It imports nothing of the project: the job sweeper is started from the worker's signal handlers in
:mod:`facecurate.jobs.signals`, connected when the jobs app is ready.

Run a worker with ``celery -A facecurate worker -Q default,gpu`` (embedded default, one machine).
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "facecurate.settings")

app = Celery("facecurate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
