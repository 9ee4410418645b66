from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "facecurate.runs"
    verbose_name = "Pipeline runs, clusters and review"
    default_auto_field = "django.db.models.BigAutoField"
