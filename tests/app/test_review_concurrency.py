"""Two annotators on one cluster never overwrite each other silently: a lease while the cluster is open
(409 naming the holder), and a version check on every action (409 naming who changed it), also when
both requests race (each request its own thread and database connection)."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from tests.app.conftest import make_user
from tests.app.review_fixtures import assert_consistent, small_run
from tests.app.test_review_api import _c, _members, _snapshot


def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def two(db):
    run, clusters, outliers, labeled = small_run()
    anna, _ = make_user("anna", "annotator")
    bob, _ = make_user("bob", "annotator")
    return {"run": run, "clusters": clusters, "outliers": outliers, "anna": _client(anna), "bob": _client(bob),
            "users": (anna, bob)}


def test_lease_acquire_renew_release_and_the_second_person(two):
    c = two["clusters"][0]
    url = f"/api/clusters/{c.pk}/lease/"
    resp = two["anna"].post(url, {"op": "acquire"}, format="json")
    assert resp.status_code == 200 and resp.json()["lease_user"] == "anna"
    first_until = resp.json()["lease_until"]
    resp = two["bob"].post(url, {"op": "acquire"}, format="json")
    assert resp.status_code == 409 and resp.json()["code"] == "leased"
    assert "anna is reviewing" in resp.json()["detail"] and "read-only" in resp.json()["detail"]
    # bob may still look
    assert two["bob"].get(f"/api/clusters/{c.pk}/").json()["lease_user"] == "anna"
    resp = two["anna"].post(url, {"op": "renew", "seconds": 300}, format="json")
    assert resp.status_code == 200 and resp.json()["lease_until"] > first_until
    # bob's release does nothing to anna's lease
    two["bob"].post(url, {"op": "release"}, format="json")
    assert _c(c.pk).lease_user_id == two["users"][0].pk
    assert two["anna"].post(url, {"op": "release"}, format="json").json()["lease_user"] is None
    assert two["bob"].post(url, {"op": "acquire"}, format="json").status_code == 200


def test_an_expired_lease_is_free_to_take(two):
    from django.utils import timezone

    from facecurate.runs.models import Cluster

    c = two["clusters"][0]
    two["anna"].post(f"/api/clusters/{c.pk}/lease/", {}, format="json")
    Cluster.objects.filter(pk=c.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    resp = two["bob"].post(f"/api/clusters/{c.pk}/confirm/", {"version": 1}, format="json")
    assert resp.status_code == 200
    assert two["bob"].post(f"/api/clusters/{c.pk}/lease/", {}, format="json").status_code == 200


def test_stale_version_names_who_changed_it(two):
    a = two["clusters"][0]
    out = two["outliers"][a.pk]
    assert two["anna"].post(f"/api/clusters/{a.pk}/reject/", {"version": 1, "faces": [out]},
                            format="json").status_code == 200
    state = _snapshot(two["run"])
    resp = two["bob"].post(f"/api/clusters/{a.pk}/confirm/", {"version": 1}, format="json")
    assert resp.status_code == 409 and resp.json()["code"] == "stale_version"
    assert "changed by anna" in resp.json()["detail"] and "version 2" in resp.json()["detail"]
    assert _snapshot(two["run"]) == state


def test_a_merge_target_changed_meanwhile_is_refused(two):
    a, b = two["clusters"][0], two["clusters"][1]
    two["anna"].post(f"/api/clusters/{b.pk}/confirm/", {"version": 1}, format="json")
    resp = two["bob"].post(f"/api/clusters/{a.pk}/merge/", {"version": 1, "other": b.pk, "other_version": 1},
                           format="json")
    assert resp.status_code == 409 and "anna" in resp.json()["detail"]


def _race(calls):
    out = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def go(i, fn):
        from django.db import connection

        try:
            barrier.wait()
            out[i] = fn()
        finally:
            connection.close()

    threads = [threading.Thread(target=go, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


@pytest.mark.django_db(transaction=True)
def test_racing_actions_on_one_cluster_one_wins_the_other_gets_409():
    run, clusters, outliers, _ = small_run()
    anna, bob = make_user("anna", "annotator")[0], make_user("bob", "annotator")[0]
    a, b = clusters[0], clusters[1]
    faces = _members(a)
    for _round in range(3):
        a, b = _c(a.pk), _c(b.pk)
        ca, cb = _client(anna), _client(bob)
        results = _race([
            lambda: ca.post(f"/api/clusters/{a.pk}/reject/", {"version": a.version, "faces": [faces[0]]},
                            format="json"),
            lambda: cb.post(f"/api/clusters/{a.pk}/move/", {"version": a.version, "faces": [faces[0]],
                                                           "target": b.pk}, format="json"),
        ])
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 409], [r.content for r in results]
        loser = [r for r in results if r.status_code == 409][0].json()
        assert loser["code"] == "stale_version"
        assert_consistent(run)
        # put it back for the next round
        winner = [r for r in results if r.status_code == 200][0].json()
        user = anna if winner["action"]["user"] == "anna" else bob
        from facecurate.runs.services import review

        review.undo(user, winner["action"]["id"])


@pytest.mark.django_db(transaction=True)
def test_crossing_merges_do_not_deadlock():
    """A merges B while B merges A: locks are taken in id order, so one waits, then sees a stale version."""
    run, clusters, _, _ = small_run()
    anna, bob = make_user("anna", "annotator")[0], make_user("bob", "annotator")[0]
    a, b = clusters[0], clusters[1]
    ca, cb = _client(anna), _client(bob)
    results = _race([
        lambda: ca.post(f"/api/clusters/{a.pk}/merge/", {"version": 1, "other": b.pk, "other_version": 1},
                        format="json"),
        lambda: cb.post(f"/api/clusters/{b.pk}/merge/", {"version": 1, "other": a.pk, "other_version": 1},
                        format="json"),
    ])
    assert sorted(r.status_code for r in results) == [200, 409], [r.content for r in results]
    assert_consistent(run)
