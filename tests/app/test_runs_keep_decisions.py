"""Human decisions survive a new run: a confirmed cluster of an earlier run on the same dataset is kept
as it is (same faces, confirmed, p- 0, pointing at the earlier cluster) and only the rest is clustered."""
from __future__ import annotations

import pytest

from tests.app.conftest import wait_for_job
from tests.app.run_fixtures import featured_dataset, rows_of

pytestmark = pytest.mark.slow


def _run(client, ds):
    resp = client.post("/api/runs/", {"unlabeled_dataset": ds.pk}, format="json")
    assert resp.status_code == 202, resp.content
    job = wait_for_job(resp.json()["job"]["id"], timeout=180)
    assert job.state == "succeeded", job.error
    return resp.json()["id"]


def test_confirmed_clusters_are_kept_and_the_rest_reclustered(worker, staff_client):
    from facecurate.runs.models import Cluster, RunFace

    ds = featured_dataset("att-twice", "att", rows_of("att", [f"s{i}" for i in range(1, 21)]), labeled=False)
    first = _run(staff_client, ds)
    kept = Cluster.objects.filter(run_id=first, size__gte=5).order_by("id").first()
    faces = set(RunFace.objects.filter(cluster=kept).values_list("face_id", flat=True))
    # One face rejected by the reviewer is not carried into the next run's cluster.
    rejected = RunFace.objects.filter(cluster=kept).order_by("id").first()
    RunFace.objects.filter(pk=rejected.pk).update(cluster=None, excluded="rejected")
    Cluster.objects.filter(pk=kept.pk).update(review_state="confirmed", size=len(faces) - 1)
    faces.discard(rejected.face_id)

    second = _run(staff_client, ds)
    carried = Cluster.objects.get(run_id=second, carried_from=kept)
    assert carried.review_state == "confirmed"
    rows = RunFace.objects.filter(run_id=second, cluster=carried)
    assert set(rows.values_list("face_id", flat=True)) == faces
    assert set(rows.values_list("p_minus", flat=True)) == {0.0}
    others = RunFace.objects.filter(run_id=second).exclude(cluster=carried)
    assert others.filter(face_id=rejected.face_id).exists()  # clustered again like any face
    assert not others.filter(face_id__in=faces).exists()
    assert Cluster.objects.filter(run_id=second).count() > 1
    queue = staff_client.get(f"/api/runs/{second}/clusters/").json()["results"]
    assert carried.pk not in [c["id"] for c in queue]  # the queue shows pending clusters only by default
