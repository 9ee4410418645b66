"""Multipart upload of many files: 202 with the job URL, the Celery worker detects, aligns, thumbnails."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from facecurate.datasets.models import Face
from facecurate.datasets.models import Image as StoredImage
from tests.app.conftest import blank_image_bytes, named_file, real_face_paths, wait_for_job


def _upload(client, dataset_id, files, **extra):
    return client.post(f"/api/datasets/{dataset_id}/upload/", {"files": files, **extra}, format="multipart")


def test_upload_many_files_unlabeled(worker, staff_client, annotator_client, make_dataset):
    ds = make_dataset("mixed")
    paths = real_face_paths(3)
    files = [named_file(p.name, p.read_bytes()) for p in paths] + [named_file("noise.png", blank_image_bytes(1))]
    resp = _upload(staff_client, ds["id"], files)
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["queued"] == 4 and body["rejected"] == []
    assert resp["Location"] == body["job_url"]
    assert {a["name"] for a in body["accepted"]} == {p.name for p in paths} | {"noise.png"}

    job = wait_for_job(body["job"], timeout=90)
    assert job.state == "succeeded", job.error
    assert job.result["images"] == {"pending": 0, "ok": 3, "no_face": 1, "error": 0}

    api_job = annotator_client.get(body["job_url"]).json()
    assert api_job["state"] == "succeeded" and api_job["progress_current"] == api_job["progress_total"] == 4

    images = annotator_client.get(f"/api/images/?dataset={ds['id']}").json()["results"]
    by_name = {im["source_name"]: im for im in images}
    for p in paths:
        im = by_name[p.name]
        assert im["status"] == "ok" and im["num_faces"] >= 1 and im["face_count"] >= 1 and im["identity"] is None
        assert (im["width"], im["height"]) == (250, 250)
        faces = annotator_client.get(f"/api/faces/?image={im['id']}").json()["results"]
        primary = [f for f in faces if f["is_primary"]]
        assert len(primary) == 1 and faces[0]["index"] == 0
        f = primary[0]
        assert len(f["box"]) == 4 and len(f["landmarks"]) == 5 and f["det_score"] > 0.6 and f["identity"] is None
        crop = Image.open(io.BytesIO(b"".join(annotator_client.get(f["crop_url"]).streaming_content)))
        assert crop.format == "PNG" and crop.size == (112, 112)
        thumb = Image.open(io.BytesIO(b"".join(annotator_client.get(f["thumbnail_url"]).streaming_content)))
        assert thumb.format == "JPEG" and max(thumb.size) <= 128
    noise = by_name["noise.png"]
    assert noise["status"] == "no_face" and noise["num_faces"] == 0 and noise["face_count"] == 0
    assert noise["thumbnail_url"]  # kept and shown, not dropped
    body = annotator_client.get(f"/api/datasets/{ds['id']}/").json()
    assert body["image_counts"] == {"pending": 0, "ok": 3, "no_face": 1, "error": 0, "total": 4}
    assert body["face_count"] == Face.objects.filter(dataset_id=ds["id"]).count() >= 3


def test_upload_labeled_with_identity(worker, staff_client, make_dataset):
    ds = make_dataset("people", kind="labeled")
    p = real_face_paths(1)[0]
    resp = _upload(staff_client, ds["id"], [named_file(p.name, p.read_bytes())], identity="Aaron Eckhart")
    assert resp.status_code == 202
    assert wait_for_job(resp.json()["job"]).state == "succeeded"
    face = StoredImage.objects.get(dataset_id=ds["id"])
    assert face.identity.name == "Aaron Eckhart" and face.status == "ok"
    ids = staff_client.get(f"/api/identities/?dataset={ds['id']}").json()["results"]
    assert [(i["name"], i["face_count"]) for i in ids] == [("Aaron Eckhart", 1)]


@pytest.mark.django_db
def test_labeled_upload_without_identity_is_rejected_per_file(staff_client, make_dataset):
    ds = make_dataset("people2", kind="labeled")
    resp = _upload(staff_client, ds["id"], [named_file("a.png", blank_image_bytes(2))])
    assert resp.status_code == 400  # nothing accepted: no job
    assert [(r["name"], r["code"]) for r in resp.json()["rejected"]] == [("a.png", "no_identity")]
    assert StoredImage.objects.count() == 0


@pytest.mark.django_db
def test_upload_needs_files(staff_client, make_dataset):
    ds = make_dataset()
    resp = staff_client.post(f"/api/datasets/{ds['id']}/upload/", {}, format="multipart")
    assert resp.status_code == 400 and "files" in resp.json()
