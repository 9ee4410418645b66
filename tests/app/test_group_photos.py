"""What users really upload: summit photos with many people each. Every face above the minimum size
and score is kept (not only the most central one), and a run clusters the same leaders across photos."""
from __future__ import annotations

import shutil
from collections import Counter

import pytest
from django.conf import settings

from tests.app.conftest import wait_for_job
from tests.conftest import shared_path

pytestmark = pytest.mark.slow

#: Measured with the defaults (FACECURATE_DETECT_MAX_SIDE=1600, MIN_FACE_SCORE=0.7, MIN_FACE_PX=24):
#: YuNet finds 761 faces at its own 0.6 threshold; 671 are kept (the data README's 750 is at score 0.7
#: with no size floor). See README, "Measured".
PHOTOS, FACES_KEPT = 39, 671


def test_group_photos_keep_every_face_and_cluster_leaders_across_photos(worker, staff_client, make_dataset):
    from facecurate.datasets.models import Face, Image
    from facecurate.runs.models import RunFace

    shutil.copytree(shared_path("group-photos"), settings.IMPORT_ROOT / "summits")
    ds = make_dataset("summits")
    resp = staff_client.post(f"/api/datasets/{ds['id']}/import/", {"path": "summits"}, format="json")
    assert resp.status_code == 202, resp.content
    job = wait_for_job(resp.json()["job"], timeout=300)
    assert job.state == "succeeded", job.error
    assert Image.objects.filter(dataset_id=ds["id"], status="ok").count() == PHOTOS
    per_photo = Counter(Face.objects.filter(dataset_id=ds["id"]).values_list("image_id", flat=True))
    assert sum(per_photo.values()) == FACES_KEPT == job.result["faces"]
    assert sum(1 for n in per_photo.values() if n >= 3) >= 30  # group photos: several faces each
    assert Face.objects.filter(dataset_id=ds["id"], is_primary=True).count() == PHOTOS

    resp = staff_client.post("/api/runs/", {"unlabeled_dataset": ds["id"]}, format="json")
    assert resp.status_code == 202, resp.content
    run_job = wait_for_job(resp.json()["job"]["id"], timeout=600)
    assert run_job.state == "succeeded", run_job.error
    rows = list(RunFace.objects.filter(run_id=resp.json()["id"], cluster__isnull=False)
                .values_list("cluster_id", "face__image_id"))
    photos_per_cluster: dict[int, list[int]] = {}
    for cluster, image in rows:
        photos_per_cluster.setdefault(cluster, []).append(image)
    spread = sorted((len(set(p)) for p in photos_per_cluster.values()), reverse=True)
    assert spread[0] >= 8 and sum(1 for s in spread if s >= 4) >= 5  # the same people recur across photos
    same_photo_twice = sum(len(p) - len(set(p)) for p in photos_per_cluster.values())
    assert same_photo_twice <= 0.05 * len(rows)  # one person is in a photo once
