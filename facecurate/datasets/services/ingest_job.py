"""The ingestion job's work, run by :func:`facecurate.jobs.runner.run_job`.

Stages: ``copy`` (imports and manifests: files from the import root into the dataset) then
``detect`` (every pending image of the job). Progress never goes backwards: an import counts its
files to copy and then the images to detect in one total. Images commit in chunks, each chunk's
Image and Face rows in one transaction (their files are already on disk), so a chunk lost to a dead
worker is redone in full by the next one and nothing is duplicated.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Callable

from django.db import transaction
from django.db.models import Count

from facecurate.jobs.models import Job
from facecurate.jobs.runner import JobCancelled, JobContext, JobFailed, run_job

from ..models import Face, Image
from . import ingest
from .detect import process_image
from .storage import sweep_temp_files

log = logging.getLogger(__name__)


def summarize(job: Job) -> dict:
    counts = {s: 0 for s in Image.Status.values}
    for row in Image.objects.filter(job=job).values("status").order_by().annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def _copy_stage(ctx: JobContext) -> int:
    """Copy an import's or manifest's files; returns how many progress units the copy used."""
    job, dataset = ctx.job, ctx.job.dataset
    report = ingest.BatchReport()
    if job.kind == Job.Kind.INGEST_IMPORT:
        folder = ingest.resolve_import_path(job.params["path"], want="dir")
        found, rejected = ingest.scan_folder(folder, labeled=dataset.is_labeled)
        report.rejected.extend(rejected)
        files = [(rel, ident) for _, rel, ident in found]
    else:
        files = [(e["path"], e.get("identity")) for e in job.params["entries"]]
    n = len(files)
    ctx.progress(0, 2 * n, stage="copy")

    def copied(i: int, total: int) -> None:
        ctx.progress(i, 2 * n)
        ctx.check_cancel()

    ingest.register_server_files(dataset, job, files, report, progress=copied, chunk_size=64)
    ctx.set_result(rejected=[asdict(r) for r in report.rejected], accepted=len(report.accepted))
    return n


def _detect_stage(ctx: JobContext, offset: int, detector, on_image, chunk_size: int) -> None:
    job = ctx.job
    pending = list(Image.objects.filter(job=job, status=Image.Status.PENDING).order_by("id")
                   .values_list("id", flat=True))
    total = Image.objects.filter(job=job).count()
    done = total - len(pending)
    ctx.progress(offset + done, offset + total, stage="detect", force=True)
    k = 0
    for start in range(0, len(pending), chunk_size):
        batch = list(Image.objects.filter(id__in=pending[start:start + chunk_size], status=Image.Status.PENDING)
                     .select_related("dataset"))
        found = [(image, process_image(image, detector)) for image in batch]
        with transaction.atomic():
            # faces of an image put back to pending by hand (rows commit with their image, never half)
            Face.objects.filter(image__in=[image for image, _ in found]).delete()
            Face.objects.bulk_create([face for _, faces in found for face in faces])
            for image, _ in found:
                image.save()
        done += len(batch)
        for image, _ in found:
            k += 1
            if on_image is not None:
                on_image(image, k)
        ctx.progress(offset + done, offset + total)
        ctx.check_cancel()


def ingest_work(ctx: JobContext, *, detector=None, on_image=None, chunk_size: int = 16) -> None:
    job = ctx.job
    swept = sweep_temp_files(job.dataset.media_dir())
    if swept:
        log.info("removed %d stale temp file(s) of dataset %s", swept, job.dataset_id)
    try:
        offset = 0
        if job.kind in (Job.Kind.INGEST_IMPORT, Job.Kind.INGEST_MANIFEST):
            offset = _copy_stage(ctx)
        _detect_stage(ctx, offset, detector, on_image, chunk_size)
    except JobCancelled:
        ctx.job.stage = "cancelled"
        ctx.set_result(images=summarize(job), faces=Face.objects.filter(image__job=job).count())
        raise
    except ingest.IngestError as exc:
        raise JobFailed(f"{exc.code}: {exc.message}") from None
    ctx.progress(ctx.job.progress_total, stage="done", force=True)
    ctx.set_result(images=summarize(job), faces=Face.objects.filter(image__job=job).count())


def run_ingest_job(job_id, *, detector=None, on_image: Callable[[Image, int], None] | None = None,
                   chunk_size: int = 16) -> Job:
    """Do (or finish) an ingestion job; see the module docstring. ``on_image(image, k)`` runs after the
    k-th image of this attempt is committed (tests use it to simulate a worker dying)."""
    return run_job(job_id, lambda ctx: ingest_work(ctx, detector=detector, on_image=on_image,
                                                   chunk_size=chunk_size))
