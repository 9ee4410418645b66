"""Migrating from one-face-per-image to Image + Face detections loses nothing: every processed image
keeps its id, file and identity, and its face (box, landmarks, score, crop, identity) becomes a Face."""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("datasets", "0003_face_identity_restrict"), ("jobs", "0001_initial")]
AFTER = [("datasets", "0004_image_face_split")]


@pytest.mark.django_db(transaction=True)
def test_old_faces_become_images_with_one_face_each():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Dataset, Identity, OldFace = (old.get_model("datasets", m) for m in ("Dataset", "Identity", "Face"))
    ds = Dataset.objects.create(name="old", kind="labeled")
    alice = Identity.objects.create(dataset=ds, name="Alice")
    ok = OldFace.objects.create(dataset=ds, identity=alice, source_name="a.jpg", file="raw/a.jpg", sha256="a" * 64,
                                size_bytes=10, status="ok", num_faces=2, box=[1, 2, 30, 40],
                                landmarks=[[1, 1]] * 5, det_score=0.9, crop="crops/a.png", thumbnail="thumbs/a.jpg")
    none = OldFace.objects.create(dataset=ds, identity=alice, source_name="b.jpg", file="raw/b.jpg", sha256="b" * 64,
                                  size_bytes=10, status="no_face", num_faces=0, thumbnail="thumbs/b.jpg")

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    Image, Face = new.get_model("datasets", "Image"), new.get_model("datasets", "Face")
    assert sorted(Image.objects.values_list("id", "file", "identity_id", "status")) == [
        (ok.id, "raw/a.jpg", alice.id, "ok"), (none.id, "raw/b.jpg", alice.id, "no_face")]
    face = Face.objects.get()
    assert (face.image_id, face.identity_id, face.is_primary, face.index) == (ok.id, alice.id, True, 0)
    assert (face.box, face.det_score, face.crop, face.thumbnail) == ([1, 2, 30, 40], 0.9, "crops/a.png", "thumbs/a.jpg")

    executor = MigrationExecutor(connection)  # and back: the primary face returns to its image
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    back = old.get_model("datasets", "Face").objects.get(pk=ok.id)
    assert (back.box, back.crop, back.det_score) == ([1, 2, 30, 40], "crops/a.png", 0.9)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
