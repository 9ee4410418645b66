"""Jobs that tell the truth (issue 17 items 5, 6, 7 and the re-run answer)."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.app.run_fixtures import featured_dataset, rows_of


def _waiting_run(user):
    """A run released by its worker, waiting for two queued embedding chunks, heartbeat long stale."""
    from facecurate.jobs.models import Job
    from facecurate.runs.models import EmbedChunk
    from facecurate.runs.services.start import start_run

    ds = featured_dataset("att-wait", "att", rows_of("att", ["s1"]), labeled=False)
    run = start_run(user, ds)
    Job.objects.filter(pk=run.job_id).update(state="running", worker="", heartbeat_at=timezone.now() - timedelta(hours=1))
    chunks = EmbedChunk.objects.bulk_create([EmbedChunk(run=run, dataset=ds, face_ids=[1]) for _ in range(2)])
    return run, chunks


@pytest.mark.django_db
def test_sweeper_leaves_a_run_waiting_for_queued_chunks_alone(staff_user):
    from facecurate.jobs.models import Job
    from facecurate.jobs.runner import sweep_stale_jobs
    from facecurate.runs.models import EmbedChunk

    run, chunks = _waiting_run(staff_user)
    assert sweep_stale_jobs() == []
    job = Job.objects.get(pk=run.job_id)
    assert (job.state, job.recoveries, job.events) == ("running", 0, [])
    # A chunk whose worker stopped beating: now the run is stuck and goes back to the queue.
    EmbedChunk.objects.filter(pk=chunks[0].pk).update(state="running", claimed_at=timezone.now() - timedelta(hours=1))
    assert sweep_stale_jobs() == [str(run.job_id)]
    assert Job.objects.get(pk=run.job_id).state == "queued"


@pytest.mark.django_db
def test_sweeper_requeues_a_run_whose_chunks_are_all_done_but_nobody_enqueued_it(staff_user):
    from facecurate.jobs.runner import sweep_stale_jobs
    from facecurate.runs.models import EmbedChunk

    run, chunks = _waiting_run(staff_user)
    EmbedChunk.objects.filter(run=run).update(state="done")
    assert sweep_stale_jobs() == [str(run.job_id)]


def test_heartbeat_keeps_beating_through_a_database_error(transactional_db, settings, monkeypatch):
    from facecurate.jobs import runner
    from facecurate.jobs.models import Job

    settings.JOB_HEARTBEAT_SECONDS = 0.05
    job = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD)
    job = runner.claim(job.pk)
    real, calls = runner._held, []

    def flaky(j):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("connection reset by peer")
        return real(j)

    monkeypatch.setattr(runner, "_held", flaky)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    before = Job.objects.get(pk=job.pk).heartbeat_at
    hb = runner.Heartbeat(job)
    hb.start()
    try:
        for _ in range(200):
            if len(calls) >= 3:
                break
            time.sleep(0.05)
        assert hb.is_alive() and not hb.lost
        assert Job.objects.get(pk=job.pk).heartbeat_at > before
    finally:
        hb.stop()


@pytest.mark.django_db
def test_stage_transitions_are_compare_and_set(staff_user):
    """A worker presumed dead (its job taken over by another) records no stage and stops (JobLost)."""
    from facecurate.jobs.models import Job
    from facecurate.jobs.runner import JobContext, JobLost
    from facecurate.runs.models import PipelineRun
    from facecurate.runs.services.orchestrate import advance_work
    from facecurate.runs.services.start import start_run

    ds = featured_dataset("att-cas", "att", rows_of("att", ["s1"]), labeled=False)
    run = start_run(staff_user, ds)
    done = {s: {"state": "done"} for s in ("embed", "overlap", "cluster", "uncertainty")}
    PipelineRun.objects.filter(pk=run.pk).update(stages=done)
    Job.objects.filter(pk=run.job_id).update(state="running", worker="elsewhere:1:abc", heartbeat_at=timezone.now())
    with pytest.raises(JobLost):
        advance_work(JobContext(Job.objects.get(pk=run.job_id)))
    assert PipelineRun.objects.get(pk=run.pk).stages == done


@pytest.mark.django_db
def test_one_place_for_the_state_rules(monkeypatch):
    from facecurate.jobs.models import InvalidTransition, Job
    from facecurate.jobs.runner import sweep_stale_jobs

    assert Job(state="running").can_transition("queued")  # the sweeper's move is a rule like the others
    job = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD, state="running", worker="dead:1:x",
                             heartbeat_at=timezone.now() - timedelta(hours=1))
    rules = {k: set(v) for k, v in Job.TRANSITIONS.items()}
    rules[Job.State.RUNNING].discard(Job.State.QUEUED)
    monkeypatch.setattr(Job, "TRANSITIONS", rules)
    with pytest.raises(InvalidTransition):
        sweep_stale_jobs()  # the sweeper asks the rules; it does not write states of its own
    assert Job.objects.get(pk=job.pk).state == "running"


def test_rerun_answers_queued_even_when_a_worker_claims_the_job_at_once(transactional_db, staff_client, monkeypatch):
    from django.db import transaction

    from facecurate.jobs.models import Job

    job = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD, state="failed", error="worker lost")

    def eager_worker(self, *args):  # the worker takes the job the moment the re-run commits
        transaction.on_commit(lambda: Job.objects.filter(pk=self.pk).update(state="running", worker="fast:1:x"))

    monkeypatch.setattr(Job, "enqueue", eager_worker)
    resp = staff_client.post(f"/api/jobs/{job.pk}/rerun/")
    assert resp.status_code == 202 and resp.json()["state"] == "queued"
    assert Job.objects.get(pk=job.pk).state == "running"


@pytest.mark.django_db
def test_a_silent_worker_shows_before_the_sweeper_acts(annotator_client, settings):
    from facecurate.jobs.models import Job

    settings.JOB_HEARTBEAT_SECONDS = 10
    now = timezone.now()
    silent = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD, state="running", worker="w:1:x",
                                heartbeat_at=now - timedelta(seconds=60))
    beating = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD, state="running", worker="w:2:x", heartbeat_at=now)
    waiting = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, state="running", worker="",
                                 heartbeat_at=now - timedelta(seconds=600))
    got = {j["id"]: j["silent_seconds"] for j in annotator_client.get("/api/jobs/").json()["results"]}
    assert got[str(silent.pk)] >= 60
    assert got[str(beating.pk)] is None and got[str(waiting.pk)] is None
