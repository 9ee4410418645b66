from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "facecurate.jobs"
    label = "jobs"
    verbose_name = "Background jobs"
