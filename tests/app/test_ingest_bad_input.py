"""Every kind of bad input gets a clear per-file error, and the rest of the batch is kept."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facecurate.datasets.models import Face
from facecurate.datasets.models import Image as StoredImage
from facecurate.datasets.services.ingest_job import run_ingest_job
from tests.app.conftest import blank_image_bytes, encode, named_file, real_face_paths

pytestmark = pytest.mark.django_db


def png_header_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _upload(client, ds, files, status=202):
    resp = client.post(f"/api/datasets/{ds['id']}/upload/", {"files": files}, format="multipart")
    assert resp.status_code == status, resp.content
    return resp.json()


def _codes(body):
    return {r["name"]: r["code"] for r in body["rejected"]}


def test_request_time_rejections_keep_the_good_files(staff_client, make_dataset):
    ds = make_dataset("bad")
    good = real_face_paths(1)[0]
    body = _upload(staff_client, ds, [
        named_file("good.jpg", good.read_bytes()),
        named_file("empty.jpg", b""),
        named_file("notes.jpg", b"this is plain text pretending to be a jpeg"),
        named_file("script.sh", b"#!/bin/sh\necho hi\n"),
        named_file("bomb.png", png_header_bomb()),
        named_file("copy-of-good.jpg", good.read_bytes()),
    ])
    assert _codes(body) == {
        "empty.jpg": "empty_file",
        "notes.jpg": "not_an_image",
        "script.sh": "not_an_image",
        "bomb.png": "too_many_pixels",
        "copy-of-good.jpg": "duplicate",
    }
    assert "good.jpg" in body["rejected"][-1]["reason"]  # says which file it duplicates
    assert [a["name"] for a in body["accepted"]] == ["good.jpg"]
    assert StoredImage.objects.filter(dataset_id=ds["id"]).count() == 1
    # Nothing of the refused files stays on disk (no temp files either).
    from django.conf import settings

    files = [p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()]
    assert len(files) == 1 and not files[0].name.startswith(".tmp")


def test_duplicate_of_an_existing_face(staff_client, make_dataset):
    ds = make_dataset("dups")
    img = blank_image_bytes(60)
    first = _upload(staff_client, ds, [named_file("a.png", img)])
    assert first["rejected"] == []
    second = _upload(staff_client, ds, [named_file("b.png", img), named_file("c.png", blank_image_bytes(61))])
    assert _codes(second) == {"b.png": "duplicate"}
    assert "a.png" in second["rejected"][0]["reason"]
    # The same image may go into another dataset.
    other = make_dataset("other")
    assert _upload(staff_client, other, [named_file("a.png", img)])["rejected"] == []


def test_too_many_pixels_by_setting(staff_client, make_dataset, settings):
    settings.MAX_IMAGE_PIXELS = 1_000_000
    ds = make_dataset("big")
    big = encode(np.zeros((1200, 1000, 3), np.uint8))  # 1.2 MP, small file
    ok = encode(np.zeros((900, 1000, 3), np.uint8) + 7)
    body = _upload(staff_client, ds, [named_file("big.png", big), named_file("ok.png", ok)])
    assert _codes(body) == {"big.png": "too_many_pixels"}
    assert "1200000" in body["rejected"][0]["reason"] or "limit" in body["rejected"][0]["reason"]


def test_oversized_request_is_413(staff_client, make_dataset, settings):
    ds = make_dataset("limits")
    settings.MAX_UPLOAD_BYTES = 10_000
    resp = staff_client.post(f"/api/datasets/{ds['id']}/upload/",
                             {"files": [named_file("x.png", b"\0" * 20_000)]}, format="multipart")
    assert resp.status_code == 413
    assert resp.json()["code"] == "request_too_large"
    assert StoredImage.objects.count() == 0


def test_truncated_and_corrupt_images_fail_in_the_worker_not_the_batch(staff_client, make_dataset):
    ds = make_dataset("broken")
    good = real_face_paths(1)[0].read_bytes()
    noise = blank_image_bytes(62, size=(96, 96))
    broken_png = bytearray(noise)
    at = noise.find(b"IDAT") + 100
    broken_png[at:at + 50] = b"\0" * 50
    body = _upload(staff_client, ds, [
        named_file("truncated.jpg", good[: len(good) // 2]),
        named_file("corrupt.png", bytes(broken_png)),
        named_file("good.jpg", good),
    ])
    assert body["rejected"] == [] and body["queued"] == 3  # headers look fine; decoding finds out
    job = run_ingest_job(body["job"])  # the worker's function, in-process
    assert job.state == "succeeded"
    faces = {f.source_name: f for f in StoredImage.objects.filter(dataset_id=ds["id"])}
    assert faces["good.jpg"].status == "ok"
    for name in ("truncated.jpg", "corrupt.png"):
        assert faces[name].status == "error"
        assert faces[name].error.startswith("corrupt_image:")
        assert not Face.objects.filter(image=faces[name]).exists()
    assert job.result["images"] == {"pending": 0, "ok": 1, "no_face": 0, "error": 2}


def test_images_are_decoded_with_exif_orientation_and_grey_formats(staff_client, make_dataset):
    ds = make_dataset("formats")
    grey = Image.fromarray(np.random.default_rng(3).integers(0, 255, (80, 60), dtype=np.uint8))
    buf = io.BytesIO()
    grey.save(buf, format="PPM")  # PGM, like att_faces
    body = _upload(staff_client, ds, [named_file("g.pgm", buf.getvalue())])
    job = run_ingest_job(body["job"])
    face = StoredImage.objects.get(dataset_id=ds["id"])
    assert job.state == "succeeded" and face.status == "no_face" and (face.width, face.height) == (60, 80)


def test_labeled_set_says_what_is_wrong_with_the_file_before_the_identity(staff_client, make_dataset):
    """A text file uploaded to a labeled set is 'not an image', and bad files create no identities."""
    from facecurate.datasets.models import Identity

    ds = make_dataset("labeled-bad", kind="labeled")
    body = _upload(staff_client, ds, [named_file("pairs.txt", b"10\t300\nAbel_Pacheco\t1\t4\n")], status=400)
    assert _codes(body) == {"pairs.txt": "not_an_image"}
    resp = staff_client.post(
        f"/api/datasets/{ds['id']}/upload/",
        {"files": [named_file("notes.jpg", b"plain text")], "identity": "Someone"},
        format="multipart",
    )
    assert resp.status_code == 400 and _codes(resp.json()) == {"notes.jpg": "not_an_image"}
    assert not Identity.objects.filter(dataset_id=ds["id"]).exists()
    body = _upload(staff_client, ds, [named_file("face.jpg", real_face_paths(1)[0].read_bytes())], status=400)
    assert _codes(body) == {"face.jpg": "no_identity"}
