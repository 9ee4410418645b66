from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "facecurate.datasets"
    label = "datasets"
    verbose_name = "Face datasets"

    def ready(self):
        from facecurate.jobs.models import Job
        from facecurate.jobs.services import RERUN_GUARDS

        from .services.busy import INGEST_KINDS, guard_ingestion_rerun, guard_run_rerun

        for kind in INGEST_KINDS:
            RERUN_GUARDS[kind] = guard_ingestion_rerun
        RERUN_GUARDS[Job.Kind.PIPELINE_RUN] = guard_run_rerun
