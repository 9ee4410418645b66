"""Real worker processes killed with SIGKILL mid-job, on both brokers: the job is requeued by the
sweeper of the next worker and finishes with no manual step and no duplicate rows. Two workers on one
run never run one stage or one embedding chunk twice."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tests.app.conftest import named_file
from tests.app.procs import Workers, redis_available, wait_until
from tests.conftest import shared_path

pytestmark = pytest.mark.slow
BROKERS = ["filesystem", pytest.param("redis", marks=pytest.mark.skipif(not redis_available(),
                                                                         reason="no Redis on 127.0.0.1:6379"))]


@pytest.fixture
def workers(request, transactional_db, tmp_path, settings):
    w = Workers(tmp_path, request.param, settings, FACECURATE_EMBED_CHUNK_FACES="40")
    yield w
    w.stop()


def _lfw_files(n: int):
    root = shared_path("lfw", "images_deepfunneled")
    paths = [p for d in sorted(root.iterdir()) if d.is_dir() for p in sorted(d.glob("*.jpg"))[:1]][:n]
    return [named_file(p.name, p.read_bytes()) for p in paths]


def _queue_ingestion(n: int):
    """An upload's job and pending images, made as the API does but not sent (the test sends it)."""
    from django.db import transaction

    from facecurate.datasets.models import Dataset
    from facecurate.datasets.services import ingest
    from facecurate.jobs.models import Job

    ds = Dataset.objects.create(name="killed", kind="unlabeled")
    with transaction.atomic():
        job = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD, dataset=ds)
        report = ingest.accept_uploads(ds, job, _lfw_files(n))
    assert len(report.accepted) == n
    return ds, job


def _start_run_unsent(monkeypatch, user, ds):
    """A run as the API starts it, but its task not sent to the test broker (where the in-thread session
    worker of other tests could take it): the test sends it to the worker processes' broker."""
    from facecurate.jobs.models import Job
    from facecurate.runs.services.start import start_run

    with monkeypatch.context() as m:
        m.setattr(Job, "enqueue", lambda self, *args: None)
        return start_run(user, ds, [])


def _ingested_run_sent(workers, monkeypatch, user, n: int):
    """``n`` faces ingested by a worker that is then killed, and a run of them sent to the workers' broker."""
    ds, job = _queue_ingestion(n)
    workers.send("facecurate.datasets.tasks.ingest_job", str(job.id))
    a = workers.start("ingest")
    wait_until(lambda: _job(job.id).state == "succeeded", 120, f"ingestion\n{workers.log_text()}")
    workers.kill(a)
    run = _start_run_unsent(monkeypatch, user, ds)
    workers.send("facecurate.runs.tasks.advance_run", str(run.job_id))
    return ds, run


def _job(job_id):
    from facecurate.jobs.models import Job

    return Job.objects.get(pk=job_id)


def _finished_by_b(workers, job_id):
    """Start worker ``b`` and return the job once it ended. If it has not in 180 s, the failure shows the job's
    state as seen from outside (``Workers.state_text``) and b's stacks go to the warnings."""
    b = workers.start_ready("b")
    try:
        return wait_until(lambda: _job(job_id) if _job(job_id).is_terminal else None, 180, "")
    except AssertionError:
        state = workers.state_text(job_id)
        workers.dump(b, "the job did not finish in 180 s under worker b")
        raise AssertionError(f"the job to finish after the kill\n{state}\n{workers.log_text()}") from None


def _kill_mid_job(workers, job_id, started, what, left_behind=lambda: True, tries: int = 3):
    """SIGKILL worker ``a`` once ``started(job)`` holds; ``left_behind()`` says the kill left work held by the
    dead worker (it can also land between two units of work, which needs no recovery: then a new ``a`` goes
    on and is killed at the next chance, up to ``tries`` times). A new worker ``b`` must finish the job."""
    for attempt in range(tries):
        a = workers.start("a" if attempt == 0 else f"a{attempt + 1}")
        wait_until(lambda: started(_job(job_id)), 90, f"{what} under way ({workers.log_text()})")
        workers.kill(a)
        if left_behind():
            break
    else:
        raise AssertionError(f"{tries} kills during {what} all landed between two units of work")
    job = _job(job_id)
    assert job.state == "running" and not job.is_terminal
    job = _finished_by_b(workers, job_id)
    assert job.state == "succeeded", job.error + workers.log_text()
    assert job.recoveries >= 1 and any("requeued" in e["what"] for e in job.events), (job.events, workers.log_text())
    return job


@pytest.mark.parametrize("workers", BROKERS, indirect=True)
def test_sigkill_mid_ingestion_then_a_new_worker_finishes_it(workers):
    from facecurate.datasets.models import Face, Image

    ds, job = _queue_ingestion(160)
    workers.send("facecurate.datasets.tasks.ingest_job", str(job.id))
    job = _kill_mid_job(workers, job.id, lambda j: j.stage == "detect" and 32 <= j.progress_current < 150,
                        "detection")
    assert job.attempts >= 2 and job.progress_current == job.progress_total == 160
    assert Image.objects.filter(dataset=ds).count() == 160
    assert not Image.objects.filter(dataset=ds, status="pending").exists()
    assert Face.objects.filter(dataset=ds, is_primary=True).count() == Image.objects.filter(dataset=ds, status="ok").count()
    assert Face.objects.filter(dataset=ds).values("image_id", "index").distinct().count() == \
        Face.objects.filter(dataset=ds).count()


@pytest.mark.parametrize("workers", BROKERS, indirect=True)
def test_sigkill_mid_embedding_then_the_run_ends_with_the_same_clusters(workers, staff_user, monkeypatch):
    from facecurate.datasets.models import Face
    from facecurate.recognition.models import EmbeddingFile
    from facecurate.recognition.services import artifacts
    from facecurate.recognition.services.embeddings import load_embeddings
    from facecurate.runs.models import EmbedChunk, RunFace
    from pipeline.clustering.methods import cluster

    ds, run = _ingested_run_sent(workers, monkeypatch, staff_user, 200)
    # a chunk the dead worker held (state running) is what the sweeper must notice and hand on
    held = EmbedChunk.objects.filter(run=run, state="running")
    _kill_mid_job(workers, run.job_id,
                  lambda j: EmbedChunk.objects.filter(run=run, state="done").exists() and held.exists(),
                  "embedding", left_behind=held.exists)
    faces = Face.objects.filter(dataset=ds).count()
    assert RunFace.objects.filter(run=run).count() == faces
    ids = np.concatenate([artifacts.read_npz(f.artifact)["face_ids"] for f in EmbeddingFile.objects.filter(dataset=ds)])
    assert len(ids) == len(set(ids.tolist())) == faces  # every face embedded once, none twice
    run.refresh_from_db()
    assert run.stages["embed"]["chunks"] == run.chunks.count() == -(-faces // 40)
    face_ids, emb = load_embeddings(ds.pk, run.recognizer)
    want = cluster(emb, "infomap")
    got = dict(RunFace.objects.filter(run=run).values_list("face_id", "original_cluster__number"))
    pairs = {frozenset(np.flatnonzero(want == c).tolist()) for c in np.unique(want)}
    stored = {}
    for i, f in enumerate(face_ids.tolist()):
        stored.setdefault(got[f], set()).add(i)
    assert {frozenset(s) for s in stored.values()} == pairs


@pytest.mark.parametrize("workers", BROKERS, indirect=True)
def test_sigkill_after_taking_a_chunk_message_before_claiming_the_chunk(workers, staff_user, monkeypatch):
    """A worker killed while it loads the model for its first chunk holds that chunk's message unacked (on
    Redis hidden for the visibility timeout, hours) with the chunk still pending and nothing beating: no
    worker ever sees it again unless the sweeper sends the pending chunks' tasks again once nothing has
    moved for JOB_RESEND_SECONDS (seen in CI: the run never finished)."""
    from facecurate.runs.models import EmbedChunk

    _, run = _ingested_run_sent(workers, monkeypatch, staff_user, 80)
    a = workers.start("a")
    log = workers.logs[-1]
    wait_until(lambda: re.search(r"embed_chunk\[[^]]+\] received", log.read_text()), 120,
               f"a chunk's message taken\n{workers.log_text()}")
    workers.kill(a)
    assert not EmbedChunk.objects.filter(run=run).exclude(state="pending").exists(), "killed too late to test this"
    done = _finished_by_b(workers, run.job_id)
    assert done.state == "succeeded", done.error + workers.log_text()
    assert any(e["what"].startswith("re-sent") for e in done.events), done.events
    assert list(EmbedChunk.objects.filter(run=run).values_list("state", flat=True)) == ["done"] * run.chunks.count()


@pytest.mark.parametrize("workers", ["filesystem"], indirect=True)
def test_two_workers_never_run_a_stage_or_chunk_twice(workers, staff_user, monkeypatch):
    from facecurate.runs.models import EmbedChunk

    ds, job = _queue_ingestion(120)
    workers.send("facecurate.datasets.tasks.ingest_job", str(job.id))
    workers.start("a"), workers.start("b")
    wait_until(lambda: _job(job.id).state == "succeeded", 120, f"ingestion\n{workers.log_text()}")
    run = _start_run_unsent(monkeypatch, staff_user, ds)
    for _ in range(3):  # the same message delivered three times, as a broker may
        workers.send("facecurate.runs.tasks.advance_run", str(run.job_id))
    job = wait_until(lambda: _job(run.job_id) if _job(run.job_id).is_terminal else None, 180,
                     f"the run\n{workers.log_text()}")
    assert job.state == "succeeded", job.error
    run.refresh_from_db()
    assert {s: v.get("runs") for s, v in run.stages.items() if s != "embed"} == {s: 1 for s in run.STAGES[1:]}
    assert list(EmbedChunk.objects.filter(run=run).values_list("attempts", flat=True)) == [1] * run.chunks.count()
    logs = workers.log_text()
    assert "embed_chunk" in logs
