"""A worker dying midway leaves nothing half-written; re-running finishes the job without duplicates."""
from __future__ import annotations

import pytest
from django.conf import settings

from facecurate.datasets.models import Image
from facecurate.datasets.services.ingest_job import run_ingest_job
from facecurate.jobs.models import InvalidTransition, Job
from tests.app.conftest import blank_image_bytes, named_file, real_face_paths, wait_for_job


class WorkerDied(BaseException):
    """A simulated death: not an error the runner records, the process just stops (like SIGKILL)."""


def _heartbeat_goes_stale(job_id):
    """What time does to a dead worker's job: its heartbeat gets older than FACECURATE_JOB_STALE_SECONDS."""
    from datetime import timedelta

    from django.utils import timezone

    Job.objects.filter(pk=job_id).update(heartbeat_at=timezone.now() - timedelta(hours=1))


def _die_after(k):
    def hook(face, n):
        if n == k:
            raise WorkerDied(f"killed after {k} faces")
    return hook


def _media_files(sub):
    return sorted(p.name for p in (settings.MEDIA_ROOT).rglob(f"{sub}/*") if p.is_file())


@pytest.mark.django_db
def test_crash_midway_then_rerun_completes_without_duplicates(staff_client, make_dataset):
    ds = make_dataset("crashy")
    paths = real_face_paths(5)
    resp = staff_client.post(f"/api/datasets/{ds['id']}/upload/",
                             {"files": [named_file(p.name, p.read_bytes()) for p in paths]}, format="multipart")
    job_id = resp.json()["job"]

    with pytest.raises(WorkerDied):
        run_ingest_job(job_id, on_image=_die_after(2), chunk_size=1)
    job = Job.objects.get(pk=job_id)
    assert job.state == "running" and job.worker  # as a dead worker leaves it
    assert run_ingest_job(job_id).attempts == 1  # a live-looking holder is not taken over
    _heartbeat_goes_stale(job_id)
    statuses = sorted(Image.objects.filter(job_id=job_id).values_list("status", flat=True))
    assert statuses == ["ok", "ok", "pending", "pending", "pending"]
    first_done = dict(Image.objects.filter(job_id=job_id, status="ok").values_list("id", "processed_at"))

    # The broker redelivers (acks_late): the same job runs again and only does what is left.
    seen = []
    job = run_ingest_job(job_id, on_image=lambda face, n: seen.append(face.id))
    assert job.state == "succeeded" and job.attempts == 2
    assert len(seen) == 3 and not set(seen) & set(first_done)
    assert Image.objects.filter(job_id=job_id).count() == 5
    assert Image.objects.filter(job_id=job_id, status="ok").count() == 5
    for image_id, when in first_done.items():
        assert Image.objects.get(pk=image_id).processed_at == when  # not redone
    assert len(_media_files("crops")) == 5 and len(_media_files("thumbs")) == 10  # 5 images + 5 faces
    assert not [p for p in settings.MEDIA_ROOT.rglob(".tmp-*")]
    assert job.progress_current == job.progress_total == 5

    # A finished job is not run again.
    assert run_ingest_job(job_id).state == "succeeded"


class DyingDetector:
    """The real detector, but the worker 'dies' inside the n-th detection."""

    def __init__(self, n):
        from pipeline.recognition.faces import default_detector

        self.inner, self.n, self.calls = default_detector(), n, 0

    def detect(self, image):
        self.calls += 1
        if self.calls == self.n:
            raise WorkerDied(f"killed during detection {self.n}")
        return self.inner.detect(image)


@pytest.mark.django_db
def test_crash_inside_a_chunk_rolls_the_chunk_back(staff_client, make_dataset):
    ds = make_dataset("chunky")
    paths = real_face_paths(6)
    resp = staff_client.post(f"/api/datasets/{ds['id']}/upload/",
                             {"files": [named_file(p.name, p.read_bytes()) for p in paths]}, format="multipart")
    job_id = resp.json()["job"]
    with pytest.raises(WorkerDied):
        run_ingest_job(job_id, detector=DyingDetector(6), chunk_size=4)
    statuses = list(Image.objects.filter(job_id=job_id).order_by("id").values_list("status", flat=True))
    assert statuses == ["ok"] * 4 + ["pending"] * 2  # chunk 1 committed, chunk 2 died midway
    assert len(_media_files("crops")) == 5  # face 5's crop was written before the crash ...
    _heartbeat_goes_stale(job_id)
    job = run_ingest_job(job_id, chunk_size=4)
    assert job.state == "succeeded"
    assert Image.objects.filter(job_id=job_id, status="ok").count() == 6
    assert len(_media_files("crops")) == 6  # ... and rewritten in place, not duplicated
    assert not list(settings.MEDIA_ROOT.rglob(".tmp-*"))


@pytest.mark.django_db
def test_import_crash_during_copy_then_rerun(staff_client, make_dataset):
    ds = make_dataset("crashy-import")
    folder = settings.IMPORT_ROOT / "imgs"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.png").write_bytes(blank_image_bytes(100 + i))
    job_id = staff_client.post(f"/api/datasets/{ds['id']}/import/", {"path": "imgs"}, format="json").json()["job"]

    import facecurate.datasets.services.ingest as ingest

    real_accept = ingest.accept_stream
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise WorkerDied("killed while copying")
        return real_accept(*args, **kwargs)

    ingest.accept_stream = flaky
    try:
        with pytest.raises(WorkerDied):
            run_ingest_job(job_id)
    finally:
        ingest.accept_stream = real_accept
    # The copy chunk in flight rolled back: no rows, but three stored files (content-addressed).
    assert Image.objects.filter(job_id=job_id).count() == 0
    assert len(_media_files("raw")) == 3
    _heartbeat_goes_stale(job_id)
    job = run_ingest_job(job_id)
    assert job.state == "succeeded", job.error
    assert job.result["rejected"] == []  # files registered by the first attempt are not "duplicates"
    assert Image.objects.filter(job_id=job_id).count() == 6
    assert len(_media_files("raw")) == 6


def test_failed_job_rerun_through_the_api_and_worker(worker, staff_client, make_dataset):
    ds = make_dataset("rerun")
    p = real_face_paths(1)[0]
    resp = staff_client.post(f"/api/datasets/{ds['id']}/upload/",
                             {"files": [named_file(p.name, p.read_bytes()), named_file("n.png", blank_image_bytes(7))]},
                             format="multipart")
    job = wait_for_job(resp.json()["job"])
    assert job.state == "succeeded"
    assert staff_client.post(f"/api/jobs/{job.id}/rerun/").status_code == 409  # succeeded is final

    # Simulate a job that failed half-way: one face back to pending, job failed.
    Image.objects.filter(job=job, source_name="n.png").update(status="pending", thumbnail="")
    Job.objects.filter(pk=job.id).update(state="failed", error="worker lost")
    resp = staff_client.post(f"/api/jobs/{job.id}/rerun/")
    assert resp.status_code == 202 and resp.json()["state"] == "queued"
    job = wait_for_job(job.id)
    assert job.state == "succeeded" and job.error == ""
    assert job.result["images"] == {"pending": 0, "ok": 1, "no_face": 1, "error": 0}


@pytest.mark.django_db
def test_job_state_machine():
    job = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD)
    assert job.state == "queued"
    with pytest.raises(InvalidTransition):
        job.transition(Job.State.SUCCEEDED)
    job.transition(Job.State.RUNNING)
    assert job.started_at is not None and job.attempts == 1
    job.transition(Job.State.FAILED, error="boom")
    assert job.finished_at is not None and job.error == "boom"
    job.transition(Job.State.QUEUED)
    assert job.error == "" and job.finished_at is None
    job.transition(Job.State.CANCELLED)
    job.transition(Job.State.QUEUED)
    job.transition(Job.State.RUNNING)
    job.transition(Job.State.SUCCEEDED)
    for to in Job.State.values:
        assert not job.can_transition(to)


@pytest.mark.django_db
def test_jobs_api_is_read_only_with_cancel(staff_client, annotator_client):
    job = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD)
    assert annotator_client.get(f"/api/jobs/{job.id}/").json()["state"] == "queued"
    assert staff_client.delete(f"/api/jobs/{job.id}/").status_code == 405
    assert staff_client.patch(f"/api/jobs/{job.id}/", {"state": "succeeded"}, format="json").status_code == 405
    assert staff_client.post("/api/jobs/", {"kind": "x"}, format="json").status_code == 405
    assert annotator_client.post(f"/api/jobs/{job.id}/cancel/").status_code == 403
    resp = staff_client.post(f"/api/jobs/{job.id}/cancel/")
    assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
    assert staff_client.post(f"/api/jobs/{job.id}/cancel/").status_code == 409


@pytest.mark.django_db
def test_cancel_running_job_stops_between_files(staff_client, make_dataset):
    ds = make_dataset("cancel")
    files = [named_file(f"{i}.png", blank_image_bytes(200 + i)) for i in range(4)]
    job_id = staff_client.post(f"/api/datasets/{ds['id']}/upload/", {"files": files}, format="multipart").json()["job"]

    def cancel_after_first(face, n):
        if n == 1:
            Job.objects.filter(pk=job_id).update(cancel_requested=True)

    from facecurate.datasets.services import ingest_job

    job = ingest_job.run_ingest_job(job_id, on_image=cancel_after_first, chunk_size=1)
    assert job.state == "cancelled"
    assert job.result["images"]["pending"] == 3
    assert staff_client.post(f"/api/jobs/{job_id}/rerun/").status_code == 202


def test_requeuejobs_resends_lost_messages(worker, staff_client, make_dataset, capsys):
    from django.core.management import call_command

    ds = make_dataset("lost")
    job = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD, dataset=ds_obj(ds))
    # Its face was stored, but no task was ever sent (the web process died before sending).
    from facecurate.datasets.services.ingest import accept_uploads

    accept_uploads(job.dataset, job, [named_file("a.png", blank_image_bytes(400))])
    Job.objects.filter(pk=job.pk).update(updated_at=job.updated_at.replace(year=2000))
    call_command("requeuejobs", "--older-than", "60")
    assert f"re-sent {job.pk}" in capsys.readouterr().out
    assert wait_for_job(job.id).state == "succeeded"


def ds_obj(ds):
    from facecurate.datasets.models import Dataset

    return Dataset.objects.get(pk=ds["id"])


@pytest.mark.django_db
def test_temp_files_of_a_killed_process_are_swept(staff_client, make_dataset):
    import os

    ds = make_dataset("sweep")
    job_id = staff_client.post(f"/api/datasets/{ds['id']}/upload/",
                               {"files": [named_file("a.png", blank_image_bytes(500))]}, format="multipart").json()["job"]
    raw = settings.MEDIA_ROOT / "datasets" / str(ds["id"]) / "raw"
    old, young = raw / ".tmp-killed", raw / ".tmp-live-upload"
    old.write_bytes(b"half a file")
    young.write_bytes(b"still uploading")
    os.utime(old, (0, 0))
    assert run_ingest_job(job_id).state == "succeeded"
    assert not old.exists() and young.exists()
