"""A run's inputs are fixed while it runs: no ingestion into a dataset an unfinished run uses (as its
unlabeled dataset or one of its labeled ones), and no run while an ingestion of its datasets is unfinished.

Both sides lock the dataset rows (``select_for_update``, ascending id) before they look, so a run start
and an ingestion request for the same dataset are serialized on PostgreSQL: one of them sees the other.
The refusal is a 409 that names the job to wait for.
"""
from __future__ import annotations

from facecurate.jobs.models import Job

from ..models import Dataset

ACTIVE = (Job.State.QUEUED, Job.State.RUNNING)
INGEST_KINDS = (Job.Kind.INGEST_UPLOAD, Job.Kind.INGEST_IMPORT, Job.Kind.INGEST_MANIFEST)


class DatasetBusy(Exception):
    """The dataset is in use by an unfinished job (HTTP 409); the message says which and what to do."""

    status = 409
    code = "dataset_busy"


def lock(datasets) -> list[Dataset]:
    """Lock the dataset rows (call inside a transaction); ascending id order, so two callers cannot deadlock."""
    ids = sorted({d.pk if isinstance(d, Dataset) else int(d) for d in datasets})
    return list(Dataset.objects.select_for_update().filter(pk__in=ids).order_by("pk"))


def run_using(dataset: Dataset) -> Job | None:
    """An unfinished pipeline run that reads ``dataset`` (unlabeled or labeled), or None."""
    for job in Job.objects.filter(kind=Job.Kind.PIPELINE_RUN, state__in=ACTIVE).order_by("created_at"):
        if job.dataset_id == dataset.pk or dataset.pk in (job.params or {}).get("labeled", []):
            return job
    return None


def check_ingestion_allowed(dataset: Dataset) -> None:
    """Lock ``dataset`` and refuse (DatasetBusy) while an unfinished run uses it."""
    lock([dataset])
    job = run_using(dataset)
    if job is not None:
        raise DatasetBusy(f"dataset {dataset.name!r} is in use by a {job.state} pipeline run (job {job.pk}); "
                          "a run's faces are fixed when it starts: add files once it has finished or is cancelled")


def check_run_allowed(datasets) -> None:
    """Lock ``datasets`` and refuse (DatasetBusy) while an ingestion into one of them is unfinished."""
    locked = lock(datasets)
    job = Job.objects.filter(kind__in=INGEST_KINDS, state__in=ACTIVE, dataset__in=locked).order_by("created_at") \
        .select_related("dataset").first()
    if job is not None:
        raise DatasetBusy(f"an ingestion into {job.dataset.name!r} is {job.state} (job {job.pk}); start the run "
                          "when it has finished, so the run sees every face")


def guard_ingestion_rerun(job: Job) -> None:
    """Re-running an ingestion is an ingestion: refused (JobConflict) while a run uses its dataset."""
    from facecurate.jobs.services import JobConflict

    if job.dataset_id is None:
        return
    try:
        check_ingestion_allowed(job.dataset)
    except DatasetBusy as exc:
        raise JobConflict(str(exc)) from None


def guard_run_rerun(job: Job) -> None:
    """Re-running a pipeline run: refused (JobConflict) while an ingestion of its datasets is unfinished."""
    from facecurate.jobs.services import JobConflict

    try:
        check_run_allowed([d for d in [job.dataset_id, *(job.params or {}).get("labeled", [])] if d is not None])
    except DatasetBusy as exc:
        raise JobConflict(str(exc)) from None
