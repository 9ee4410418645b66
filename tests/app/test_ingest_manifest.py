"""Manifest import: a CSV or JSON list of files under the import root, with identities for labeled sets."""
from __future__ import annotations

import json
import shutil

import pytest
from django.conf import settings

from facecurate.datasets.models import Image
from facecurate.datasets.services.ingest import parse_manifest
from tests.app.conftest import blank_image_bytes, named_file, real_face_paths, wait_for_job


def _stage(paths):
    folder = settings.IMPORT_ROOT / "batch"
    folder.mkdir()
    for p in paths:
        shutil.copy(p, folder / p.name)
    return [f"batch/{p.name}" for p in paths]


def test_csv_manifest_labeled(worker, staff_client, make_dataset):
    ds = make_dataset("csv", kind="labeled")
    faces = real_face_paths(2)
    rels = _stage(faces)
    csv_text = "path,identity\n" + "".join(f"{r},{p.parent.name}\n" for r, p in zip(rels, faces))
    csv_text += "batch/missing.jpg,Nobody\n../outside.jpg,Nobody\nbatch/" + faces[0].name + ",\n"
    resp = staff_client.post(f"/api/datasets/{ds['id']}/manifest/",
                             {"manifest": named_file("list.csv", csv_text.encode())}, format="multipart")
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["queued"] == 2
    assert sorted((r["name"], r["code"]) for r in body["rejected"]) == [
        ("../outside.jpg", "unsafe_path"), ("batch/" + faces[0].name, "no_identity"),
        ("batch/missing.jpg", "not_found")]
    job = wait_for_job(body["job"])
    assert job.state == "succeeded" and job.result["images"]["ok"] == 2
    got = sorted(Image.objects.filter(dataset_id=ds["id"]).values_list("identity__name", "source_name"))
    assert got == sorted((p.parent.name, r) for r, p in zip(rels, faces))


def test_json_manifest_body_unlabeled(worker, staff_client, make_dataset):
    ds = make_dataset("json")
    (settings.IMPORT_ROOT / "n.png").write_bytes(blank_image_bytes(50))
    rels = _stage(real_face_paths(1))
    resp = staff_client.post(f"/api/datasets/{ds['id']}/manifest/",
                             {"entries": [{"path": rels[0]}, {"path": "n.png"}]}, format="json")
    assert resp.status_code == 202, resp.content
    job = wait_for_job(resp.json()["job"])
    assert job.result["images"] == {"pending": 0, "ok": 1, "no_face": 1, "error": 0}


@pytest.mark.django_db
def test_json_manifest_file_and_bad_manifests(staff_client, make_dataset):
    ds = make_dataset("jsonfile")
    (settings.IMPORT_ROOT / "n.png").write_bytes(blank_image_bytes(51))
    good = json.dumps(["n.png"]).encode()
    resp = staff_client.post(f"/api/datasets/{ds['id']}/manifest/",
                             {"manifest": named_file("m.json", good)}, format="multipart")
    assert resp.status_code == 202
    for bad in (b"{not json", b"name,identity\nx,y\n", b"[]", b'[{"identity": "x"}]'):
        resp = staff_client.post(f"/api/datasets/{ds['id']}/manifest/",
                                 {"manifest": named_file("m.csv", bad)}, format="multipart")
        assert resp.status_code == 400, bad
        assert resp.json()["manifest"]
    resp = staff_client.post(f"/api/datasets/{ds['id']}/manifest/", {"entries": [{"path": "/etc/passwd"}]},
                             format="json")
    assert resp.status_code == 400 and resp.json()["rejected"][0]["code"] == "unsafe_path"


def test_parse_manifest_forms():
    assert [e.path for e in parse_manifest("path\na.jpg\nb.jpg\n")] == ["a.jpg", "b.jpg"]
    assert [(e.path, e.identity) for e in parse_manifest('{"entries": [{"path": "a", "identity": "X"}]}')] == [
        ("a", "X")]
    with pytest.raises(ValueError, match="no 'path'"):
        parse_manifest([{"path": ""}])
