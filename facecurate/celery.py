"""The Celery application: configured from Django settings (namespace CELERY), tasks autodiscovered.

Run a worker with ``celery -A facecurate worker -Q default,gpu`` (embedded default, one machine).
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "facecurate.settings")

app = Celery("facecurate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
