"""Undo from the ReviewAction payload: each kind puts back exactly what it changed (also long after, from
the database alone), and is refused (409) when a later action changed the same rows."""
from __future__ import annotations

import pytest

from tests.app.conftest import make_user
from tests.app.review_fixtures import assert_consistent, small_run
from tests.app.test_review_api import _c, _members, _snapshot


@pytest.fixture
def rv(db):
    run, clusters, outliers, labeled = small_run()
    return {"run": run, "clusters": clusters, "outliers": outliers, "labeled": labeled}


def _post(client, url, body=None):
    return client.post(url, body or {}, format="json")


def _do(rv, client, kind):
    a, b = rv["clusters"][0], rv["clusters"][1]
    faces = [rv["outliers"][a.pk]]
    ident = rv["labeled"].identities.first()
    url, body = {
        "confirm": (f"{a.pk}/confirm/", {"version": 1, "name": "x"}),
        "reject": (f"{a.pk}/reject/", {"version": 1, "faces": faces}),
        "reject_confirm": (f"{a.pk}/reject/", {"version": 1, "faces": faces, "confirm": True}),
        "move": (f"{a.pk}/move/", {"version": 1, "faces": faces, "target": b.pk}),
        "split": (f"{a.pk}/split/", {"version": 1, "faces": _members(a)[:4]}),
        "merge": (f"{a.pk}/merge/", {"version": 1, "other": b.pk}),
        "assign": (f"{a.pk}/assign/", {"version": 1, "identity": ident.pk}),
        "assign_new": (f"{a.pk}/assign/", {"version": 1, "new_identity": {"dataset": rv["labeled"].pk, "name": "Zed"}}),
        "not_a_face": (f"{a.pk}/not-a-face/", {"version": 1}),
    }[kind]
    resp = _post(client, f"/api/clusters/{url}", body)
    assert resp.status_code == 200, resp.content
    return resp.json()


@pytest.mark.parametrize("kind", ["confirm", "reject", "reject_confirm", "move", "split", "merge", "assign", "assign_new", "not_a_face"])
def test_undo_puts_back_exactly_what_changed(rv, annotator_client, kind):
    from facecurate.datasets.models import Identity
    from facecurate.runs.models import Cluster, ReviewAction

    before = _snapshot(rv["run"])
    idents = Identity.objects.count()
    body = _do(rv, annotator_client, kind)
    assert _snapshot(rv["run"]) != before
    # undo from the stored payload alone, as after a reload: a fresh client, the action's id
    resp = _post(annotator_client, f"/api/review-actions/{body['action']['id']}/undo/")
    assert resp.status_code == 200, resp.content
    clusters, faces = _snapshot(rv["run"])
    # everything is as before, except versions, which only ever go up
    strip = lambda rows: [r[:2] + r[3:] for r in rows]  # noqa: E731
    assert strip(clusters) == strip(before[0]) and faces == before[1]
    old = {r[0]: r[2] for r in before[0]}
    assert all(r[2] >= old[r[0]] for r in clusters) and any(r[2] > old[r[0]] for r in clusters)
    assert Identity.objects.count() == idents
    assert not Cluster.objects.filter(run=rv["run"], number=None).exists()
    a = ReviewAction.objects.get(pk=body["action"]["id"])
    assert a.undone_at and a.undone_by.username == "anna"
    assert_consistent(rv["run"])
    again = _post(annotator_client, f"/api/review-actions/{a.pk}/undo/")
    assert again.status_code == 409 and again.json()["code"] == "already_undone"


def test_undo_refused_when_a_later_action_changed_the_same_rows(rv, annotator_client):
    a, b = rv["clusters"][0], rv["clusters"][1]
    first = _do(rv, annotator_client, "merge")
    later = _post(annotator_client, f"/api/clusters/{a.pk}/confirm/", {"version": first["clusters"][0]["version"]})
    assert later.status_code == 200
    state = _snapshot(rv["run"])
    resp = _post(annotator_client, f"/api/review-actions/{first['action']['id']}/undo/")
    assert resp.status_code == 409 and resp.json()["code"] == "undo_conflict"
    assert "confirm" in resp.json()["detail"]
    assert _snapshot(rv["run"]) == state
    # undoing the later one first, then the earlier one, works (last-in, first-out)
    assert _post(annotator_client, f"/api/review-actions/{later.json()['action']['id']}/undo/").status_code == 200
    assert _post(annotator_client, f"/api/review-actions/{first['action']['id']}/undo/").status_code == 200
    assert _c(b.pk).size == b.size and _c(a.pk).review_state == "pending"
    assert_consistent(rv["run"])


def test_undo_of_unrelated_earlier_action_is_fine(rv, annotator_client):
    c2, c3 = rv["clusters"][2], rv["clusters"][3]
    first = _post(annotator_client, f"/api/clusters/{c2.pk}/confirm/", {"version": 1}).json()
    _post(annotator_client, f"/api/clusters/{c3.pk}/confirm/", {"version": 1})
    assert _post(annotator_client, f"/api/review-actions/{first['action']['id']}/undo/").status_code == 200
    assert _c(c2.pk).review_state == "pending" and _c(c3.pk).review_state == "confirmed"


def test_only_staff_undo_someone_elses_action(rv, annotator_client, staff_client):
    from rest_framework.test import APIClient

    body = _do(rv, annotator_client, "confirm")
    bob, _ = make_user("bob", "annotator")
    client = APIClient()
    client.force_authenticate(bob)
    resp = _post(client, f"/api/review-actions/{body['action']['id']}/undo/")
    assert resp.status_code == 403 and resp.json()["code"] == "not_yours"
    assert _post(staff_client, f"/api/review-actions/{body['action']['id']}/undo/").status_code == 200
    assert _post(client, "/api/review-actions/999999/undo/").status_code == 404
