from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "facecurate.runs"
    verbose_name = "Pipeline runs, clusters and review"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from facecurate.jobs.models import Job
        from facecurate.jobs.runner import WAIT_CHECKS

        from .services.waiting import run_stuck

        WAIT_CHECKS[Job.Kind.PIPELINE_RUN] = run_stuck
