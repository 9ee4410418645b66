"""Uploads are stored outside the request's transaction (issue 17 item 12): on SQLite a transaction holds
the database's write lock, so a long upload stalled every other writer (review clicks, lease renewals)."""
from __future__ import annotations

from django.db import connection

from tests.app.conftest import blank_image_bytes, named_file


def test_upload_files_are_stored_outside_a_transaction(transactional_db, staff_client, make_dataset, monkeypatch):
    from facecurate.datasets.models import Image
    from facecurate.datasets.services import ingest
    from facecurate.jobs.models import Job

    real, inside = ingest.accept_uploads, []

    def watched(*args, **kwargs):
        inside.append(connection.in_atomic_block)
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "accept_uploads", watched)
    monkeypatch.setattr(Job, "enqueue", lambda self, *a: None)  # no worker here
    ds = make_dataset("outside")
    resp = staff_client.post(f"/api/datasets/{ds['id']}/upload/",
                             {"files": [named_file("a.png", blank_image_bytes(1)), named_file("b.png", b"")]},
                             format="multipart")
    assert resp.status_code == 202, resp.content
    assert inside == [False]
    job = Job.objects.get(pk=resp.json()["job"])
    assert job.progress_total == 1 and [r["name"] for r in job.result["rejected"]] == ["b.png"]
    assert Image.objects.filter(job=job).count() == 1
    # Nothing accepted: no job and no rows left behind.
    resp = staff_client.post(f"/api/datasets/{ds['id']}/upload/", {"files": [named_file("c.png", b"")]},
                             format="multipart")
    assert resp.status_code == 400 and Job.objects.count() == 1
