"""A queued job whose task message was lost (the web process died between commit and send, Redis
restarted without persistence, a worker was killed holding it unacked) is not stuck for good (issue 17):
every worker's sweeper sends it again once it has waited JOB_RESEND_SECONDS, once per wait, with an event
saying so; the job then runs to the end; an upload still storing its files and a job queued a moment
ago are left alone."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from tests.app.conftest import named_file, real_face_paths, wait_for_job


def _aged(job, seconds: float):
    from facecurate.jobs.models import Job

    Job.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(seconds=seconds))


def test_the_sweeper_sends_a_lost_job_again_and_it_runs_to_the_end(worker, make_dataset, settings):
    from facecurate.datasets.models import Dataset
    from facecurate.datasets.services.ingest import accept_uploads
    from facecurate.jobs.models import Job
    from facecurate.jobs.runner import resend_lost_jobs

    ds = Dataset.objects.get(pk=make_dataset("lost-msg")["id"])
    lost = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD, dataset=ds)  # committed, its task never sent
    path = real_face_paths(1)[0]
    accept_uploads(ds, lost, [named_file(path.name, path.read_bytes())])
    receiving = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD, dataset=ds, params={"receiving": True})
    fresh = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD, dataset=ds, params={"files": []})
    for job in (lost, receiving):
        _aged(job, settings.JOB_RESEND_SECONDS + 5)
    assert resend_lost_jobs() == [str(lost.pk)]
    assert resend_lost_jobs() == []  # sent once per wait: the clock starts again
    done = wait_for_job(lost.pk)
    assert done.state == "succeeded", done.error
    assert any(e["what"].startswith("re-sent") for e in done.events)
    assert Job.objects.get(pk=receiving.pk).state == "queued" == Job.objects.get(pk=fresh.pk).state


def test_every_worker_sweep_sends_lost_jobs_again(monkeypatch, settings):
    from facecurate.jobs import runner

    settings.JOB_SWEEP_SECONDS = 0.01
    calls = []
    for name in ("sweep_stale_jobs", "sweep_interrupted_uploads", "resend_lost_jobs"):
        monkeypatch.setattr(runner, name, lambda name=name: calls.append(name) or [])
    sweeper = runner.Sweeper()
    sweeper.start()
    sweeper.stop_event.set()
    sweeper.join(5)
    assert calls[:3] == ["sweep_stale_jobs", "sweep_interrupted_uploads", "resend_lost_jobs"]
