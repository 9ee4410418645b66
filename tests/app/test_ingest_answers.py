"""Every ingestion answers the same way: 202 with per-file accepted and refused lists, or, when nothing
is accepted, 400 with the refusals and no job. Also: the README's commands work as written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

from facecurate.jobs.models import Job
from tests.app.conftest import blank_image_bytes, named_file

pytestmark = pytest.mark.django_db
README = Path(__file__).resolve().parents[2] / "README.md"


def test_upload_with_every_file_refused_is_400_and_no_job(staff_client, make_dataset):
    ds = make_dataset("refused")
    resp = staff_client.post(f"/api/datasets/{ds['id']}/upload/",
                             {"files": [named_file("a.txt", b"text"), named_file("b.jpg", b"")]}, format="multipart")
    assert resp.status_code == 400, resp.content  # today: 202 and a job that "succeeded 0/0"
    body = resp.json()
    assert body["code"] == "nothing_accepted" and body["accepted"] == []
    assert {(r["name"], r["code"]) for r in body["rejected"]} == {("a.txt", "not_an_image"), ("b.jpg", "empty_file")}
    assert not Job.objects.exists()
    assert staff_client.get(f"/api/datasets/{ds['id']}/").json()["provenance"] == {}


def test_manifest_with_nothing_usable_answers_the_same_way(staff_client, make_dataset):
    ds = make_dataset("refused-manifest")
    resp = staff_client.post(f"/api/datasets/{ds['id']}/manifest/", {"entries": [{"path": "nope.jpg"}]},
                             format="json")
    assert resp.status_code == 400 and resp.json()["code"] == "nothing_accepted"
    assert [r["code"] for r in resp.json()["rejected"]] == ["not_found"] and not Job.objects.exists()


def test_import_answer_lists_files_and_refusals(staff_client, make_dataset):
    ds = make_dataset("listed", kind="labeled")
    root = settings.IMPORT_ROOT / "people"
    for folder, name, seed in (("Alice", "1.png", 1), ("alice", "2.png", 2), ("Bo\u200bb", "3.png", 3)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(blank_image_bytes(seed))
    (root / "loose.png").write_bytes(blank_image_bytes(4))
    (root / "notes.txt").write_text("not an image")
    resp = staff_client.post(f"/api/datasets/{ds['id']}/import/", {"path": "people"}, format="json")
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["queued"] == 2
    assert sorted((a["name"], a["identity"], a["image_id"]) for a in body["accepted"]) == [
        ("people/Alice/1.png", "Alice", None), ("people/alice/2.png", "alice", None)]
    assert sorted((r["name"], r["code"]) for r in body["rejected"]) == [
        ("people/Bo\u200bb/3.png", "bad_identity"), ("people/loose.png", "no_identity"),
        ("people/notes.txt", "not_an_image")]
    empty = settings.IMPORT_ROOT / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    resp = staff_client.post(f"/api/datasets/{ds['id']}/import/", {"path": "empty"}, format="json")
    assert resp.status_code == 400 and resp.json()["rejected"][0]["code"] == "not_an_image"
    assert Job.objects.count() == 1


def test_manifest_answer_lists_accepted_entries(staff_client, make_dataset):
    ds = make_dataset("m", kind="labeled")
    (settings.IMPORT_ROOT / "a.png").write_bytes(blank_image_bytes(1))
    resp = staff_client.post(f"/api/datasets/{ds['id']}/manifest/", {"entries": [
        {"path": "a.png", "identity": "  Alice "}, {"path": "a.png", "identity": "Al\u200fice"}]}, format="json")
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["accepted"] == [{"name": "a.png", "image_id": None, "identity": "Alice"}]
    assert [(r["name"], r["code"]) for r in body["rejected"]] == [("a.png", "bad_identity")]


def test_readme_commands_work_as_written():
    text = README.read_text()
    for line in text.splitlines():
        command = line.strip()
        if re.search(r"(^|\s)manage\.py\s", command):
            assert ".venv/bin/python manage.py" in command, command
    assert "--aligned" in text  # the glint-sample figures need aligned crops
    assert "var/import" in text
