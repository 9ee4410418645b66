"""Server-folder import under FACECURATE_IMPORT_ROOT; paths and symlinks escaping the root are refused."""
from __future__ import annotations

import os
import shutil

import pytest
from django.conf import settings

from facecurate.datasets.models import Image
from tests.app.conftest import blank_image_bytes, real_face_paths, wait_for_job


def _import(client, dataset_id, path):
    return client.post(f"/api/datasets/{dataset_id}/import/", {"path": path}, format="json")


def _layout(root, faces):
    """<root>/people/<Name>/<file>.jpg, plus a loose file and a non-image."""
    people = root / "people"
    for p in faces:
        (people / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, people / p.parent.name / p.name)
    (people / "Abba_Eban" / "noise.png").write_bytes(blank_image_bytes(40))
    (people / "notes.txt").write_text("not an image")
    return people


def test_import_labeled_folder_per_identity(worker, staff_client, make_dataset):
    ds = make_dataset("imported", kind="labeled")
    _layout(settings.IMPORT_ROOT, real_face_paths(3))
    resp = _import(staff_client, ds["id"], "people")
    assert resp.status_code == 202, resp.content
    job = wait_for_job(resp.json()["job"])
    assert job.state == "succeeded", job.error
    assert job.result["accepted"] == 4
    assert [(r["name"], r["code"]) for r in job.result["rejected"]] == [("people/notes.txt", "not_an_image")]
    assert job.result["images"] == {"pending": 0, "ok": 3, "no_face": 1, "error": 0}
    idents = sorted(Image.objects.filter(dataset_id=ds["id"]).values_list("identity__name", flat=True))
    assert idents == ["Aaron_Eckhart", "Abba_Eban", "Abba_Eban", "Abdullah_Gul"]
    prov = staff_client.get(f"/api/datasets/{ds['id']}/").json()["provenance"]
    assert [(i["kind"], i["source"], i["by"]) for i in prov["ingestions"]] == [("ingest_import", "people", "stella")]
    # Re-importing the same folder into the same dataset adds nothing: all duplicates.
    again = wait_for_job(_import(staff_client, ds["id"], "people").json()["job"])
    assert again.state == "succeeded" and again.result["accepted"] == 0
    assert sum(r["code"] == "duplicate" for r in again.result["rejected"]) == 4
    assert Image.objects.filter(dataset_id=ds["id"]).count() == 4


def test_import_unlabeled_keeps_nested_files(worker, staff_client, make_dataset):
    ds = make_dataset("flat")
    _layout(settings.IMPORT_ROOT, real_face_paths(2))
    job = wait_for_job(_import(staff_client, ds["id"], "people").json()["job"])
    assert job.state == "succeeded" and job.result["accepted"] == 3
    assert not Image.objects.filter(dataset_id=ds["id"], identity__isnull=False).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("path, code", [
    ("../", "unsafe_path"),
    ("people/../../x", "unsafe_path"),
    ("/etc", "unsafe_path"),
    ("missing", "not_found"),
])
def test_import_paths_outside_root_are_refused(staff_client, make_dataset, path, code):
    ds = make_dataset("guarded")
    (settings.IMPORT_ROOT / "people").mkdir()
    resp = _import(staff_client, ds["id"], path)
    assert resp.status_code == 400
    assert resp.json()["code"] == code and resp.json()["path"][0]


@pytest.mark.django_db
def test_import_symlinked_folder_escaping_root_is_refused(staff_client, make_dataset, tmp_path):
    ds = make_dataset("links")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.png").write_bytes(blank_image_bytes(41))
    os.symlink(outside, settings.IMPORT_ROOT / "sneaky")
    resp = _import(staff_client, ds["id"], "sneaky")
    assert resp.status_code == 400 and "outside the import root" in resp.json()["path"][0]


def test_import_symlinks_inside_folder(worker, staff_client, make_dataset, tmp_path):
    ds = make_dataset("links2")
    folder = settings.IMPORT_ROOT / "mix"
    folder.mkdir()
    (folder / "real.png").write_bytes(blank_image_bytes(42))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(blank_image_bytes(43))
    (outside / "sub").mkdir()
    (outside / "sub" / "s.png").write_bytes(blank_image_bytes(44))
    os.symlink(outside / "secret.png", folder / "secret.png")
    os.symlink(outside / "sub", folder / "subdir")
    (settings.IMPORT_ROOT / "shared.png").write_bytes(blank_image_bytes(45))
    os.symlink(settings.IMPORT_ROOT / "shared.png", folder / "inside-link.png")  # stays inside: fine
    job = wait_for_job(_import(staff_client, ds["id"], "mix").json()["job"])
    assert job.state == "succeeded"
    assert sorted((r["name"], r["code"]) for r in job.result["rejected"]) == [
        ("mix/secret.png", "unsafe_path"), ("mix/subdir", "unsafe_path")]
    assert sorted(Image.objects.filter(dataset_id=ds["id"]).values_list("source_name", flat=True)) == [
        "mix/inside-link.png", "mix/real.png"]
