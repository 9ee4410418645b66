"""The API side of the review UI fixes a newcomer asked for (issue 16, item 6): the expected number of
wrong members is the sum of p- (not the max), queue rows carry a strip of their most doubtful faces, the
history names identities, faces carry their image's name, and the stale-version message is a sentence."""
from __future__ import annotations

import pytest

from tests.app.review_fixtures import small_run


@pytest.fixture
def rv(db):
    run, clusters, outliers, labeled = small_run()
    return {"run": run, "clusters": clusters, "outliers": outliers, "labeled": labeled}


def test_queue_shows_the_sum_of_p_minus_and_a_strip_of_faces(rv, annotator_client):
    from facecurate.runs.models import RunFace

    rows = annotator_client.get(f"/api/runs/{rv['run'].pk}/clusters/?limit=50").json()["results"]
    assert rows
    for row in rows:
        ps = list(RunFace.objects.filter(cluster_id=row["id"]).order_by("-p_minus", "id").values_list("p_minus", flat=True))
        assert row["sum_p_minus"] == pytest.approx(sum(ps), rel=1e-6)
        assert row["sum_p_minus"] > row["max_p_minus"]  # 12 faces: the sum is not the max
    detail = annotator_client.get(f"/api/clusters/{rows[0]['id']}/").json()
    assert detail["sum_p_minus"] == pytest.approx(rows[0]["sum_p_minus"])


def test_queue_strip_is_the_most_doubtful_faces(rv, annotator_client, settings):
    from facecurate.datasets.models import Face
    from facecurate.runs.models import RunFace

    c = rv["clusters"][0]
    Face.objects.filter(run_faces__cluster=c).update(thumbnail="t/x.png")
    top = RunFace.objects.filter(cluster=c).order_by("-p_minus", "id").first()
    Face.objects.filter(pk=top.face_id).update(thumbnail="t/top.png")
    row = next(r for r in annotator_client.get(f"/api/runs/{rv['run'].pk}/clusters/").json()["results"]
               if r["id"] == c.pk)
    assert row["thumbnails"][0].endswith("t/top.png") and len(row["thumbnails"]) == 6


def test_history_names_the_identity_not_its_id(rv, annotator_client):
    from facecurate.datasets.models import Identity

    c, ident = rv["clusters"][0], Identity.objects.filter(dataset=rv["labeled"]).first()
    assert annotator_client.post(f"/api/clusters/{c.pk}/assign/", {"version": 1, "identity": ident.pk},
                                 format="json").status_code == 200
    summary = annotator_client.get(f"/api/review-actions/?run={rv['run'].pk}").json()["results"][0]["summary"]
    assert ident.name in summary and f"identity {ident.pk}" not in summary


def test_faces_carry_their_image_name(rv, annotator_client):
    c = rv["clusters"][0]
    face = annotator_client.get(f"/api/clusters/{c.pk}/faces/").json()["results"][0]
    assert face["image_name"] and "/" in face["image_name"]


def test_stale_version_message_reads_as_a_sentence(rv, annotator_client):
    from facecurate.runs.models import Cluster

    c = rv["clusters"][0]
    Cluster.objects.filter(pk=c.pk).update(version=3, changed_by=None, changed_at=None)  # changed by no one known
    resp = annotator_client.post(f"/api/clusters/{c.pk}/confirm/", {"version": 1}, format="json")
    assert resp.status_code == 409
    msg = resp.json()["detail"]
    assert "at meanwhile" not in msg and "changed by someone meanwhile" in msg, msg
