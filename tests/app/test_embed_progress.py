"""Embedding tells the truth (issue 17 item 9): progress moves within a chunk, and the embed stage's
seconds are the time it took (not the milliseconds of planning it)."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from tests.app.run_fixtures import featured_dataset, rows_of

pytestmark = pytest.mark.django_db


def _run(user):
    from facecurate.runs.services.start import start_run

    ds = featured_dataset("att-progress", "att", rows_of("att", ["s1", "s2"]), labeled=False)
    return start_run(user, ds), ds


def test_progress_moves_within_a_chunk(staff_user, monkeypatch):
    from facecurate.jobs.models import Job
    from facecurate.jobs.runner import claim, release
    from facecurate.runs.models import EmbedChunk
    from facecurate.runs.services import orchestrate

    run, ds = _run(staff_user)
    job = claim(run.job_id)
    Job.objects.filter(pk=job.pk).update(progress_current=0, progress_total=20)
    release(job)
    faces = list(ds.faces.order_by("id").values_list("id", flat=True))[:20]
    chunk = EmbedChunk.objects.create(run=run, dataset=ds, face_ids=faces)
    seen = []

    def fake_embed(face_ids, version, progress=None, **kw):
        for done in (5, 10, 15):
            progress(done, len(face_ids))
            seen.append(Job.objects.get(pk=job.pk).progress_current)
        return np.zeros((len(face_ids), 128), np.float32)

    monkeypatch.setattr(orchestrate, "embed_faces", fake_embed)
    monkeypatch.setattr(orchestrate, "save_embeddings", lambda *a, **k: None)
    assert orchestrate.embed_chunk(chunk.pk) == "done"
    assert seen == [5, 10, 15]
    assert Job.objects.get(pk=job.pk).progress_current == 20  # each face counted once


def test_embed_stage_seconds_are_the_stage_time(staff_user, monkeypatch):
    from facecurate.jobs.runner import JobContext, claim
    from facecurate.runs.models import EmbedChunk, PipelineRun
    from facecurate.runs.services import orchestrate

    run, ds = _run(staff_user)
    started = timezone.now() - timedelta(seconds=659)
    PipelineRun.objects.filter(pk=run.pk).update(stages={"embed": {"state": "running", "entries": 1,
                                                                    "started_at": started.isoformat()}})
    EmbedChunk.objects.create(run=run, dataset=ds, face_ids=[1], state="done", seconds=640.5)
    for stage in ("overlap", "cluster", "uncertainty", "store", "candidates"):
        monkeypatch.setitem(orchestrate.STAGE_FUNCS, stage, lambda ctx, r: None)
    job = claim(run.job_id)
    orchestrate.advance_work(JobContext(job))
    embed = PipelineRun.objects.get(pk=run.pk).stages["embed"]
    assert embed["state"] == "done" and embed["seconds"] >= 659 and embed["chunk_seconds"] == 640.5
