from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "facecurate.jobs"
    label = "jobs"
    verbose_name = "Background jobs"

    def ready(self):
        from . import signals  # noqa: F401 - connects the worker's sweeper handlers
