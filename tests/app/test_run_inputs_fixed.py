"""A run's inputs are fixed when it starts (issue 17 items 3 and 4): ingestion into a dataset an unfinished
run uses is refused with 409 (we refuse rather than snapshot), a run does not start while an ingestion of
its datasets is unfinished, and two starts of one dataset on PostgreSQL cannot both succeed (the dataset
row is locked)."""
from __future__ import annotations

import shutil
import threading

import pytest
from django.conf import settings

from tests.app.conftest import blank_image_bytes, named_file, real_face_paths
from tests.app.run_fixtures import featured_dataset, rows_of


def _datasets():
    unl = featured_dataset("att-fixed", "att", rows_of("att", ["s1", "s2"]), labeled=False)
    lab = featured_dataset("att-fixed-known", "att", rows_of("att", ["s3"]), labeled=True)
    return unl, lab


@pytest.mark.django_db
def test_ingestion_into_a_dataset_of_an_unfinished_run_is_refused(staff_client, staff_user):
    from facecurate.jobs.models import Job
    from facecurate.runs.services.start import start_run

    unl, lab = _datasets()
    run = start_run(staff_user, unl, [lab])
    (settings.IMPORT_ROOT / "more" / "s3").mkdir(parents=True)
    shutil.copy(real_face_paths(1)[0], settings.IMPORT_ROOT / "more" / "s3" / "a.jpg")
    for ds in (unl, lab):
        for resp in (
            staff_client.post(f"/api/datasets/{ds.pk}/upload/", {"files": [named_file("x.png", blank_image_bytes(1))],
                                                                   "identity": "s3"}, format="multipart"),
            staff_client.post(f"/api/datasets/{ds.pk}/import/", {"path": "more"}, format="json"),
            staff_client.post(f"/api/datasets/{ds.pk}/manifest/", {"entries": [{"path": "more/s3/a.jpg",
                                                                                 "identity": "s3"}]}, format="json"),
        ):
            assert resp.status_code == 409, resp.content
            body = resp.json()
            assert body["code"] == "dataset_busy" and str(run.job_id) in body["detail"]
    assert not Job.objects.exclude(kind="pipeline_run").exists()
    # Once the run is over, ingestion is open again.
    Job.objects.filter(pk=run.job_id).update(state="succeeded")
    resp = staff_client.post(f"/api/datasets/{unl.pk}/import/", {"path": "more"}, format="json")
    assert resp.status_code == 202, resp.content


@pytest.mark.django_db
def test_a_run_waits_for_unfinished_ingestion(staff_client, staff_user):
    from facecurate.jobs.models import Job

    unl, lab = _datasets()
    for ds in (unl, lab):
        job = Job.objects.create(kind=Job.Kind.INGEST_IMPORT, dataset=ds, params={"path": "more"})
        resp = staff_client.post("/api/runs/", {"unlabeled_dataset": unl.pk, "labeled_datasets": [lab.pk]},
                                 format="json")
        assert resp.status_code == 409, resp.content
        assert str(job.pk) in resp.json()["detail"]
        job.delete()


@pytest.mark.django_db
def test_rerunning_a_failed_ingestion_during_a_run_is_refused_too(staff_client, staff_user):
    """A re-run is an ingestion (or a run) like any other: the same rules, the same 409 naming the job."""
    from facecurate.jobs.models import Job
    from facecurate.runs.services.start import start_run

    unl, lab = _datasets()
    failed = Job.objects.create(kind=Job.Kind.INGEST_IMPORT, dataset=unl, params={"path": "more"}, state="failed")
    run = start_run(staff_user, unl, [lab])
    resp = staff_client.post(f"/api/jobs/{failed.pk}/rerun/")
    assert resp.status_code == 409, resp.content
    assert str(run.job_id) in resp.json()["detail"]
    assert Job.objects.get(pk=failed.pk).state == "failed"
    # and the other way round: a failed run is not re-run while an ingestion of its datasets is unfinished
    Job.objects.filter(pk=run.job_id).update(state="failed")
    busy = Job.objects.create(kind=Job.Kind.INGEST_IMPORT, dataset=lab, params={"path": "more"})
    resp = staff_client.post(f"/api/jobs/{run.job_id}/rerun/")
    assert resp.status_code == 409 and str(busy.pk) in resp.json()["detail"], resp.content
    busy.delete()
    assert staff_client.post(f"/api/jobs/{failed.pk}/rerun/").status_code == 202


@pytest.mark.slow
def test_two_starts_of_one_dataset_on_postgresql_cannot_both_succeed(transactional_db, staff_user, monkeypatch):
    from django.db import connection

    from facecurate.runs.models import PipelineRun
    from facecurate.runs.services import start
    from facecurate.runs.services.start import RunRequestError

    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite serializes every write)")
    unl, lab = _datasets()
    barrier = threading.Barrier(2, timeout=3)
    real = start.active_version

    def slow_version():  # both starts inside their transaction at once (the old code let both through)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return real()

    monkeypatch.setattr(start, "active_version", slow_version)
    outcomes = []

    def go():
        try:
            start.start_run(staff_user, unl, [lab])
            outcomes.append("started")
        except RunRequestError as exc:
            outcomes.append(exc.status)
        finally:
            connection.close()

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(map(str, outcomes)) == ["409", "started"]
    assert PipelineRun.objects.filter(unlabeled_dataset=unl).count() == 1
