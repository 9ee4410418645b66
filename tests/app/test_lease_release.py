"""Issue 17 item 10: leaving a cluster page (its keepalive POST ``op: release``) never waits for a lock.

A release used to lock the cluster's row (``select_for_update`` in a transaction, on SQLite a write
transaction begun IMMEDIATE) like a review action does, so a page being left queued behind any other
request on that cluster. Now it is one conditional UPDATE: it takes no row lock and clears only the
caller's own lease."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from facecurate.runs.services import review
from tests.app.conftest import make_user
from tests.app.review_fixtures import small_run


@pytest.fixture
def leased(db):
    run, clusters, _, _ = small_run(people=2, per=4)
    anna, _ = make_user("anna", "annotator")
    bob, _ = make_user("bob", "annotator")
    review.lease(anna, clusters[0].pk, "acquire")
    return clusters[0], anna, bob


def test_release_takes_no_row_lock(leased, monkeypatch):
    cluster, anna, bob = leased

    def no_lock(ids):
        raise AssertionError(f"release locked clusters {ids}")

    monkeypatch.setattr(review, "_lock", no_lock)
    assert review.lease(bob, cluster.pk, "release").lease_user_id == anna.pk  # not bob's: kept
    out = review.lease(anna, cluster.pk, "release")
    assert out.lease_user_id is None and out.lease_until is None


def test_release_over_the_api(leased):
    cluster, anna, bob = leased
    client = APIClient()
    client.force_authenticate(anna)
    resp = client.post(f"/api/clusters/{cluster.pk}/lease/", {"op": "release"}, format="json")
    assert resp.status_code == 200 and resp.json()["lease_user"] is None
    resp = client.post("/api/clusters/999999/lease/", {"op": "release"}, format="json")
    assert resp.status_code == 404 and resp.json()["code"] == "unknown_cluster"
