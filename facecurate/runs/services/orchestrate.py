"""A pipeline run, stage by stage, under the job runner.

``advance_work`` runs the stages in order, skipping those recorded done. Embedding fans out: the
faces without an embedding for the run's recognizer version are cut into ``EmbedChunk`` rows, one
Celery task per chunk goes to the "gpu" queue, and the run is released (``WAITING``) until the last
chunk enqueues it again. A chunk is claimed compare-and-set, so any number of workers share the
chunks and none embeds one twice; a chunk whose worker died is claimed again once it is stale.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from facecurate.jobs.models import Job
from facecurate.jobs.runner import WAITING, JobContext, JobLost, worker_id
from facecurate.recognition.services.embeddings import embed_faces, missing_faces, save_embeddings
from facecurate.recognition.services.versions import embedder_for

from ..models import EmbedChunk, PipelineRun
from .merge_queue import candidates_stage
from .stages import cluster_stage, overlap_stage, uncertainty_stage
from .store import store_stage

log = logging.getLogger(__name__)
STAGE_FUNCS = {"overlap": overlap_stage, "cluster": cluster_stage, "uncertainty": uncertainty_stage,
               "store": store_stage, "candidates": candidates_stage}
EMBED_TASK = "facecurate.ml.embed_chunk"


def _mark(ctx: JobContext, run: PipelineRun, stage: str, **info) -> None:
    """Record a stage's state, compare-and-set: only while this worker holds the run's job (a worker
    presumed dead whose job another worker took over stops here, JobLost, and records nothing)."""
    stages = {**run.stages, stage: {**run.stages.get(stage, {}), **info}}
    if not PipelineRun.objects.filter(pk=run.pk, job__state=Job.State.RUNNING, job__worker=worker_id()).update(
            stages=stages):
        raise JobLost(f"job {ctx.job.pk} is held by another worker now; stage {stage} not recorded")
    run.stages = stages


def advance_work(ctx: JobContext):
    run = PipelineRun.objects.select_related("recognizer", "job").get(job_id=ctx.job.pk)
    for i, stage in enumerate(PipelineRun.STAGES):
        if run.stage_done(stage):
            continue
        ctx.check_cancel()
        # "runs" > 1 only when a dead worker's stage is redone; the embed stage is entered again each time
        # its chunks report back (its units of work are the chunks, each claimed once).
        key = "entries" if stage == "embed" else "runs"
        _mark(ctx, run, stage, state="running", **{key: run.stages.get(stage, {}).get(key, 0) + 1},
              started_at=run.stages.get(stage, {}).get("started_at") or timezone.now().isoformat())
        t0 = time.perf_counter()
        if stage == "embed":
            if not plan_embedding(ctx, run):
                return WAITING
        else:
            ctx.progress(i, len(PipelineRun.STAGES), stage=stage, force=True)
            STAGE_FUNCS[stage](ctx, run)
        extra = {}
        if stage == "embed":  # its work is the chunks': from the stage's start to now, and the chunks' own time
            seconds = (timezone.now() - datetime.fromisoformat(run.stages["embed"]["started_at"])).total_seconds()
            extra["chunk_seconds"] = round(sum(run.chunks.exclude(seconds__isnull=True)
                                               .values_list("seconds", flat=True)), 3)
        else:
            seconds = run.stages[stage].get("seconds", 0.0) + (time.perf_counter() - t0)
        _mark(ctx, run, stage, state="done", seconds=round(seconds, 3), finished_at=timezone.now().isoformat(),
              **extra)
    ctx.progress(len(PipelineRun.STAGES), len(PipelineRun.STAGES), stage="done", force=True)
    ctx.set_result(counts=run.counts, run=run.pk)
    return None


def plan_embedding(ctx: JobContext, run: PipelineRun) -> bool:
    """Create the run's chunks once, send tasks for those not done; True when nothing is left."""
    if not run.chunks.exists():
        datasets = [run.unlabeled_dataset_id, *run.labeled_datasets.values_list("id", flat=True)]
        size = settings.EMBED_CHUNK_FACES
        chunks = []
        for ds in datasets:
            todo = missing_faces(ds, run.recognizer)
            chunks += [EmbedChunk(run=run, dataset_id=ds, face_ids=todo[s:s + size]) for s in range(0, len(todo), size)]
        EmbedChunk.objects.bulk_create(chunks)
        total = sum(len(c.face_ids) for c in chunks)
        _mark(ctx, run, "embed", faces=total, chunks=len(chunks))
        ctx.progress(0, total, stage="embed", force=True)
    left = list(run.chunks.exclude(state=EmbedChunk.State.DONE).values_list("id", flat=True))
    if not left:
        return True
    from facecurate.celery import app

    ctx.after_release += [lambda c=chunk_id: app.send_task(EMBED_TASK, args=[c]) for chunk_id in left]
    return False


def _claim_chunk(chunk_id: int) -> EmbedChunk | None:
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    n = (EmbedChunk.objects.filter(pk=chunk_id)
         .filter(state=EmbedChunk.State.PENDING) | EmbedChunk.objects.filter(
             pk=chunk_id, state=EmbedChunk.State.RUNNING, claimed_at__lt=stale)).update(
        state=EmbedChunk.State.RUNNING, worker=worker_id(), claimed_at=now, attempts=F("attempts") + 1)
    return EmbedChunk.objects.select_related("run__recognizer", "run__job").get(pk=chunk_id) if n else None


def embed_chunk(chunk_id: int) -> str:
    """Embed one chunk (if this worker wins it), record the file, enqueue the run when all are done."""
    # The model is loaded (once per process: seconds, e.g. OpenVINO compiling it) before the claim, so a
    # claimed chunk beats from the start and a slow first load never looks like a dead worker.
    pending = EmbedChunk.objects.filter(pk=chunk_id).select_related("run__recognizer").first()
    if pending is not None and pending.state != EmbedChunk.State.DONE:
        embedder_for(pending.run.recognizer)
    chunk = _claim_chunk(chunk_id)
    if chunk is None:
        return "not claimed"
    run, job = chunk.run, chunk.run.job
    if job.cancel_requested or job.is_terminal:
        EmbedChunk.objects.filter(pk=chunk.pk).update(state=EmbedChunk.State.PENDING, worker="")
        return "run stopped"
    t0 = time.perf_counter()

    reported = [0]  # faces of this chunk already counted in the job's progress

    def beat(done: int, total: int) -> None:
        """Within a chunk: the chunk's claim, the job's heartbeat and its progress move on."""
        now = timezone.now()
        EmbedChunk.objects.filter(pk=chunk.pk, worker=worker_id()).update(claimed_at=now)
        step, reported[0] = max(done - reported[0], 0), max(done, reported[0])
        Job.objects.filter(pk=job.pk, state=Job.State.RUNNING).update(
            heartbeat_at=now, progress_current=F("progress_current") + step)

    emb = embed_faces(chunk.face_ids, run.recognizer, progress=beat)
    save_embeddings(chunk.dataset_id, run.recognizer, chunk.face_ids, emb, name=f"run-{run.pk}-chunk-{chunk.pk}",
                    job=job)
    seconds = time.perf_counter() - t0
    with transaction.atomic():
        if not EmbedChunk.objects.filter(pk=chunk.pk, worker=worker_id()).update(
                state=EmbedChunk.State.DONE, seconds=seconds):
            return "taken over"
        _progress(job, len(chunk.face_ids) - reported[0], len(chunk.face_ids), seconds)
        if not run.chunks.exclude(state=EmbedChunk.State.DONE).exists():
            fresh = Job.objects.get(pk=job.pk)
            if fresh.state == Job.State.RUNNING:
                fresh.enqueue()
    return "done"


def _progress(job: Job, left_over: int, n: int, seconds: float) -> None:
    rate = n / seconds if seconds > 0 else None
    Job.objects.filter(pk=job.pk).update(progress_current=F("progress_current") + left_over,
                                         heartbeat_at=timezone.now())
    fresh = Job.objects.get(pk=job.pk)
    left = max(fresh.progress_total - fresh.progress_current, 0)
    Job.objects.filter(pk=job.pk).update(progress_info={"rate": round(rate, 2) if rate else None,
                                                        "eta_seconds": round(left / rate, 1) if rate else None})
