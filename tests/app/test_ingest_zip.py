"""Zip archives: folders name identities in labeled sets; unsafe entries are refused one by one."""
from __future__ import annotations

import pytest

from facecurate.datasets.models import Image
from tests.app.conftest import blank_image_bytes, make_zip, named_file, real_face_paths, wait_for_job


def _upload(client, dataset_id, files):
    return client.post(f"/api/datasets/{dataset_id}/upload/", {"files": files}, format="multipart")


def test_zip_folder_per_identity(worker, staff_client, make_dataset):
    ds = make_dataset("zipped", kind="labeled")
    a, b = real_face_paths(2)
    archive = make_zip({
        f"export/Aaron_Eckhart/{a.name}": a.read_bytes(),
        f"export/Abba_Eban/{b.name}": b.read_bytes(),
        "export/Abba_Eban/noface.png": blank_image_bytes(3),
        "__MACOSX/export/._x.png": b"junk",
    })
    resp = _upload(staff_client, ds["id"], [named_file("people.zip", archive)])
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["rejected"] == [] and body["queued"] == 3
    assert {x["identity"] for x in body["accepted"]} == {"Aaron_Eckhart", "Abba_Eban"}
    job = wait_for_job(body["job"])
    assert job.state == "succeeded" and job.result["images"]["ok"] == 2 and job.result["images"]["no_face"] == 1
    got = sorted((f.identity.name, f.status) for f in Image.objects.filter(dataset_id=ds["id"]))
    assert got == [("Aaron_Eckhart", "ok"), ("Abba_Eban", "no_face"), ("Abba_Eban", "ok")]


@pytest.mark.django_db
def test_zip_unsafe_entries_rejected_rest_kept(staff_client, make_dataset):
    ds = make_dataset("unsafe")
    archive = make_zip(
        {
            "good/1.png": blank_image_bytes(10),
            "/etc/abs.png": blank_image_bytes(11),
            "../../escape.png": blank_image_bytes(12),
            "good/../../../up.png": blank_image_bytes(13),
            "C:/windows.png": blank_image_bytes(14),
            "good/2.png": blank_image_bytes(15),
            "good/readme.txt": b"hello, not an image",
            "good/empty.png": b"",
        },
        symlinks={"good/link.png": "/etc/passwd"},
    )
    resp = _upload(staff_client, ds["id"], [named_file("mixed.zip", archive)])
    assert resp.status_code == 202
    body = resp.json()
    rejected = {r["name"].split(":", 1)[1]: r["code"] for r in body["rejected"]}
    assert rejected == {
        "/etc/abs.png": "unsafe_path",
        "../../escape.png": "unsafe_path",
        "good/../../../up.png": "unsafe_path",
        "C:/windows.png": "unsafe_path",
        "good/readme.txt": "not_an_image",
        "good/empty.png": "empty_file",
        "good/link.png": "symlink",
    }
    assert sorted(a["name"] for a in body["accepted"]) == ["mixed.zip:good/1.png", "mixed.zip:good/2.png"]
    assert Image.objects.filter(dataset_id=ds["id"]).count() == 2
    # Nothing was written outside the dataset's folder.
    from django.conf import settings

    written = sorted(p.relative_to(settings.MEDIA_ROOT).parts[:3] for p in settings.MEDIA_ROOT.rglob("*") if p.is_file())
    assert {w[:3] for w in written} == {("datasets", str(ds["id"]), "raw")}


@pytest.mark.django_db
def test_corrupt_zip_is_a_per_file_error(staff_client, make_dataset):
    ds = make_dataset("badzip")
    good = blank_image_bytes(20)
    resp = _upload(staff_client, ds["id"], [named_file("broken.zip", b"PK\x03\x04 this is not really a zip"),
                                             named_file("ok.png", good)])
    assert resp.status_code == 202
    body = resp.json()
    assert [(r["name"], r["code"]) for r in body["rejected"]] == [("broken.zip", "bad_archive")]
    assert [a["name"] for a in body["accepted"]] == ["ok.png"]


@pytest.mark.django_db
def test_zip_expanding_past_the_limit(staff_client, make_dataset, settings):
    settings.MAX_ARCHIVE_MB = 1
    ds = make_dataset("bomb")
    big = b"\0" * (900 * 1024)  # compresses to almost nothing, expands to 0.9 MB each
    archive = make_zip({"a.png": blank_image_bytes(30), "b.bin": big, "c.bin": big})
    resp = _upload(staff_client, ds["id"], [named_file("bomb.zip", archive)])
    body = resp.json()
    codes = {r["name"]: r["code"] for r in body["rejected"]}
    assert codes["bomb.zip:c.bin"] == "archive_too_large"
    assert [a["name"] for a in body["accepted"]] == ["bomb.zip:a.png"]
