"""Starting and cancelling pipeline runs (domain rules; the API view only translates errors)."""
from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from facecurate.datasets.models import Dataset, Image
from facecurate.datasets.services.busy import DatasetBusy, check_run_allowed
from facecurate.jobs.models import Job
from facecurate.recognition.models import RecognizerVersion
from facecurate.recognition.services.versions import active_version

from ..models import PipelineRun


class RunRequestError(ValueError):
    """A run that cannot start; ``status`` is the HTTP status that says why (400 or 409)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_method(method: str, params: dict) -> None:
    """Refuse an unknown method, or a setting it does not take or a value it cannot (type, range), with why."""
    from pipeline.clustering.methods import METHODS
    from pipeline.clustering.params import check_params

    if method not in METHODS:
        raise RunRequestError(f"unknown clustering method {method!r}; choose from {', '.join(sorted(METHODS))}")
    errors = check_params(METHODS[method].func, params)
    if errors:
        raise RunRequestError(f"method {method!r}: {'; '.join(errors)}")


def start_run(user, unlabeled: Dataset, labeled: list[Dataset] = (), *, recognizer: RecognizerVersion | None = None,
              method: str = "infomap", params: dict | None = None, options: dict | None = None) -> PipelineRun:
    params, options = dict(params or {}), dict(options or {})
    if unlabeled.is_labeled:
        raise RunRequestError(f"dataset {unlabeled.name!r} is labeled; a run clusters an unlabeled dataset")
    bad = [d.name for d in labeled if not d.is_labeled]
    if bad:
        raise RunRequestError(f"not labeled datasets: {', '.join(bad)}")
    check_method(method, params)
    with transaction.atomic():
        # The dataset rows are locked first: two starts (or a start and an ingestion) of one dataset queue
        # here, and the second sees what the first did.
        try:
            check_run_allowed([unlabeled, *labeled])
        except DatasetBusy as exc:
            raise RunRequestError(str(exc), status=409) from None
        pending = Image.objects.filter(Q(dataset=unlabeled) | Q(dataset__in=list(labeled)), status="pending").count()
        if pending:
            raise RunRequestError(f"{pending} images are still waiting for face detection; start the run when "
                                  "their ingestion jobs are done", status=409)
        busy = Job.objects.filter(
            kind=Job.Kind.PIPELINE_RUN, pipeline_run__unlabeled_dataset=unlabeled,
            state__in=[Job.State.QUEUED, Job.State.RUNNING]).first()
        if busy is not None:
            raise RunRequestError(f"a run of {unlabeled.name!r} is already {busy.state} (job {busy.pk})", status=409)
        version = recognizer or active_version()
        job = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, dataset=unlabeled, created_by=user,
                                 params={"method": method, "params": params, "options": options,
                                         "recognizer": version.pk, "labeled": [d.pk for d in labeled]})
        run = PipelineRun.objects.create(job=job, unlabeled_dataset=unlabeled, recognizer=version, method=method,
                                         params=params, options=options, created_by=user)
        run.labeled_datasets.set(labeled)
        job.enqueue()
    return run
