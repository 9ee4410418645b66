from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "facecurate.runs"
    verbose_name = "Pipeline runs, clusters and review"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from facecurate.jobs.models import Job
        from facecurate.jobs.runner import RESEND_SUBTASKS, WAIT_CHECKS

        from .services.waiting import resend_pending_chunks, run_stuck

        WAIT_CHECKS[Job.Kind.PIPELINE_RUN] = run_stuck
        RESEND_SUBTASKS[Job.Kind.PIPELINE_RUN] = resend_pending_chunks
