"""An upload whose web process dies while storing its files does not block the dataset for good (issue 17):
the job says "receiving" until its files are stored; the sweeper cancels one that stayed silent past the
stale limit, with the reason, and a run of the dataset can start; a long upload that keeps storing files is
left alone; a finished upload is no longer "receiving"."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.app.conftest import blank_image_bytes, named_file, real_face_paths
from tests.app.run_fixtures import featured_dataset, rows_of

pytestmark = pytest.mark.django_db


def _receiving(ds, seconds_ago: float):
    from facecurate.jobs.models import Job

    job = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD, dataset=ds, params={"files": ["a.png"], "receiving": True})
    Job.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(seconds=seconds_ago))
    return job


def test_sweeper_cancels_an_interrupted_upload_and_runs_can_start(staff_user, settings):
    from facecurate.jobs.models import Job
    from facecurate.jobs.runner import sweep_interrupted_uploads
    from facecurate.runs.services.start import RunRequestError, start_run

    unl = featured_dataset("att-upl", "att", rows_of("att", ["s1", "s2"]), labeled=False)
    dead = _receiving(unl, settings.JOB_STALE_SECONDS + 30)
    alive = _receiving(featured_dataset("att-upl2", "att", rows_of("att", ["s3"]), labeled=False), 5)
    done = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD, dataset=unl, params={"receiving": False})
    Job.objects.filter(pk=done.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    with pytest.raises(RunRequestError):
        start_run(staff_user, unl, [])
    assert sweep_interrupted_uploads() == [str(dead.pk)]
    dead.refresh_from_db()
    assert dead.state == "cancelled" and "interrupted" in dead.error
    assert Job.objects.get(pk=alive.pk).state == "queued" and Job.objects.get(pk=done.pk).state == "queued"
    Job.objects.filter(pk=done.pk).update(state="succeeded")
    assert start_run(staff_user, unl, []).pk  # the dataset is free again
    assert sweep_interrupted_uploads() == []


def test_a_finished_upload_is_no_longer_receiving(staff_client):
    from facecurate.datasets.models import Dataset
    from facecurate.jobs.models import Job

    ds = Dataset.objects.create(name="upl-ok", kind="unlabeled")
    face = real_face_paths(1)[0]
    resp = staff_client.post(f"/api/datasets/{ds.pk}/upload/", {"files": [named_file("a.jpg", face.read_bytes()),
                                                                          named_file("b.png", blank_image_bytes(2))]},
                             format="multipart")
    assert resp.status_code == 202, resp.content
    job = Job.objects.get(kind="ingest_upload", dataset=ds)
    assert job.params["receiving"] is False and job.state == "queued"
