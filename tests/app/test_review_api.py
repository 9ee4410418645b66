"""The review API, one endpoint per decision: what each does to the rows (and the audit log), and the bad
requests that change nothing (4xx with detail and code)."""
from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from tests.app.conftest import make_user, wait_for_job
from tests.app.review_fixtures import assert_consistent, small_run
from tests.app.run_fixtures import featured_dataset


@pytest.fixture
def rv(db):
    run, clusters, outliers, labeled = small_run()
    return {"run": run, "clusters": clusters, "outliers": outliers, "labeled": labeled}


def _c(pk):
    from facecurate.runs.models import Cluster

    return Cluster.objects.get(pk=pk)


def _members(c):
    from facecurate.runs.models import RunFace

    return list(RunFace.objects.filter(cluster_id=c.pk if hasattr(c, "pk") else c).order_by("-p_minus", "id")
                .values_list("pk", flat=True))


def _snapshot(run):
    from facecurate.runs.models import Cluster, RunFace

    return (sorted(Cluster.objects.filter(run=run).values_list("pk", "size", "version", "review_state", "name",
                                                                "assigned_identity_id")),
            sorted(RunFace.objects.filter(run=run).values_list("pk", "cluster_id", "excluded")))


def _actions():
    from facecurate.runs.models import ReviewAction

    return ReviewAction.objects.count()


# --- who may ---------------------------------------------------------------------------------------------


def test_anonymous_gets_401_and_no_role_403(rv):
    c = rv["clusters"][0]
    assert APIClient().post(f"/api/clusters/{c.pk}/confirm/", {"version": 1}, format="json").status_code == 401
    assert APIClient().get(f"/api/review-actions/?run={rv['run'].pk}").status_code == 401
    nobody, _ = make_user("nora", None)
    client = APIClient()
    client.force_authenticate(nobody)
    resp = client.post(f"/api/clusters/{c.pk}/confirm/", {"version": 1}, format="json")
    assert resp.status_code == 403 and resp.json()["code"] == "permission_denied"
    assert _c(c.pk).review_state == "pending"


def test_annotator_reviews_but_does_not_start_runs(rv, annotator_client):
    c = rv["clusters"][0]
    assert annotator_client.post(f"/api/clusters/{c.pk}/confirm/", {"version": 1}, format="json").status_code == 200
    resp = annotator_client.post("/api/runs/", {"unlabeled_dataset": rv["run"].unlabeled_dataset_id}, format="json")
    assert resp.status_code == 403


# --- each action -----------------------------------------------------------------------------------------


def test_confirm_with_a_name(rv, annotator_client, annotator_user):
    c = rv["clusters"][0]
    resp = annotator_client.post(f"/api/clusters/{c.pk}/confirm/", {"version": 1, "name": "  Ada   L "}, format="json")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["clusters"][0]["version"] == 2 and body["clusters"][0]["review_state"] == "confirmed"
    assert body["action"]["kind"] == "confirm" and body["action"]["user"] == "anna"
    c = _c(c.pk)
    assert (c.review_state, c.name, c.reviewed_by, c.changed_by) == ("confirmed", "Ada L", annotator_user,
                                                                     annotator_user)
    from facecurate.runs.models import ReviewAction

    a = ReviewAction.objects.get()
    assert a.user == annotator_user and a.created_at and a.cluster_id == c.pk and a.run_id == rv["run"].pk


def test_reject_takes_faces_out_never_deletes(rv, annotator_client):
    from facecurate.runs.models import RunFace

    c = rv["clusters"][1]
    out = rv["outliers"][c.pk]
    assert _members(c)[0] == out  # the planted outlier is the most doubtful face
    resp = annotator_client.post(f"/api/clusters/{c.pk}/reject/", {"version": 1, "faces": [out]}, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["results"] == [{"id": out, "ok": True}]
    rf = RunFace.objects.get(pk=out)
    assert rf.cluster_id is None and rf.excluded == "rejected" and rf.original_cluster_id == c.pk
    c2 = _c(c.pk)
    assert c2.size == c.size - 1 and c2.max_p_minus < c.max_p_minus and c2.review_state == "pending"
    assert_consistent(rv["run"])


def test_reject_and_confirm_the_rest_is_one_action(rv, annotator_client):
    from facecurate.runs.models import ReviewAction, RunFace

    c = rv["clusters"][2]
    out = rv["outliers"][c.pk]
    resp = annotator_client.post(f"/api/clusters/{c.pk}/reject/", {"version": 1, "faces": [out], "confirm": True},
                                 format="json")
    assert resp.status_code == 200, resp.content
    assert RunFace.objects.get(pk=out).excluded == "rejected"
    c2 = _c(c.pk)
    assert c2.size == c.size - 1 and c2.review_state == "confirmed" and c2.reviewed_by.username == "anna"
    a = ReviewAction.objects.get(pk=resp.json()["action"]["id"])
    assert a.kind == "reject" and ReviewAction.objects.filter(run=rv["run"]).count() == 1
    assert resp.json()["action"]["summary"] == f"rejected 1 face(s) from cluster {c.pk} and confirmed the rest"
    bad = annotator_client.post(f"/api/clusters/{c.pk}/reject/", {"version": c2.version, "faces": [out],
                                                                   "confirm": "perhaps"}, format="json")
    assert bad.status_code == 400
    assert_consistent(rv["run"])


def test_move_to_another_cluster(rv, annotator_client):
    a, b = rv["clusters"][0], rv["clusters"][1]
    out = rv["outliers"][a.pk]
    resp = annotator_client.post(f"/api/clusters/{a.pk}/move/", {"version": 1, "faces": [out], "target": b.pk},
                                 format="json")
    assert resp.status_code == 200, resp.content
    assert {c["id"]: c["version"] for c in resp.json()["clusters"]} == {a.pk: 2, b.pk: 2}
    assert out in _members(b) and out not in _members(a)
    assert (_c(a.pk).size, _c(b.pk).size) == (a.size - 1, b.size + 1)
    assert_consistent(rv["run"])


def test_split_into_a_new_cluster(rv, annotator_client):
    a = rv["clusters"][2]
    faces = _members(a)[:3]
    resp = annotator_client.post(f"/api/clusters/{a.pk}/split/", {"version": 1, "faces": faces, "name": "twin"},
                                 format="json")
    assert resp.status_code == 200, resp.content
    new = _c(resp.json()["created_cluster"])
    assert new.number is None and new.run_id == a.run_id and new.size == 3 and new.name == "twin"
    assert new.review_state == "pending" and sorted(_members(new)) == sorted(faces)
    assert _c(a.pk).size == a.size - 3
    assert_consistent(rv["run"])


def test_merge_moves_every_face_and_dismisses_the_other(rv, annotator_client):
    a, b = rv["clusters"][0], rv["clusters"][3]
    resp = annotator_client.post(f"/api/clusters/{a.pk}/merge/", {"version": 1, "other": b.pk, "other_version": 1},
                                 format="json")
    assert resp.status_code == 200, resp.content
    a2, b2 = _c(a.pk), _c(b.pk)
    assert a2.size == a.size + b.size and b2.size == 0 and b2.review_state == "dismissed"
    assert len(resp.json()["results"]) == b.size
    assert_consistent(rv["run"])


def test_assign_a_known_identity_and_type_ahead(rv, annotator_client):
    run, c = rv["run"], rv["clusters"][0]
    ident = rv["labeled"].identities.order_by("name").first()
    found = annotator_client.get(f"/api/runs/{run.pk}/identities/?q={ident.name[:3].lower()}").json()
    assert found[0]["id"] == ident.pk and found[0]["name"] == ident.name
    assert annotator_client.get(f"/api/runs/{run.pk}/identities/?q=zzqx-nobody").json() == []
    resp = annotator_client.post(f"/api/clusters/{c.pk}/assign/", {"version": 1, "identity": ident.pk}, format="json")
    assert resp.status_code == 200, resp.content
    c2 = _c(c.pk)
    assert c2.assigned_identity_id == ident.pk and c2.review_state == "confirmed" and c2.name == ident.name


def test_assign_new_identity_is_explicit_and_never_duplicates(rv, annotator_client):
    from facecurate.datasets.models import Identity

    c, labeled = rv["clusters"][0], rv["labeled"]
    existing = labeled.identities.first()
    before = Identity.objects.count()
    # a name is not an id: a typo cannot create anything
    resp = annotator_client.post(f"/api/clusters/{c.pk}/assign/", {"version": 1, "identity": existing.name},
                                 format="json")
    assert resp.status_code == 400
    resp = annotator_client.post(f"/api/clusters/{c.pk}/assign/", {"version": 1, "new_identity": {
        "dataset": labeled.pk, "name": existing.name.upper()}}, format="json")
    assert resp.status_code == 409 and resp.json()["code"] == "name_taken"
    assert Identity.objects.count() == before
    resp = annotator_client.post(f"/api/clusters/{c.pk}/assign/", {"version": 1, "new_identity": {
        "dataset": labeled.pk, "name": "Newcomer One"}}, format="json")
    assert resp.status_code == 200, resp.content
    made = Identity.objects.get(name="Newcomer One")
    assert made.dataset_id == labeled.pk and _c(c.pk).assigned_identity_id == made.pk


def test_assign_refuses_identity_outside_the_run(rv, annotator_client):
    other = featured_dataset("elsewhere", "att", np.arange(10), labeled=True)
    c = rv["clusters"][0]
    resp = annotator_client.post(f"/api/clusters/{c.pk}/assign/", {"version": 1,
                                 "identity": other.identities.first().pk}, format="json")
    assert resp.status_code == 400 and resp.json()["code"] == "other_dataset"
    resp = annotator_client.post(f"/api/clusters/{c.pk}/assign/", {"version": 1, "identity": 10 ** 9}, format="json")
    assert resp.status_code == 400 and resp.json()["code"] == "unknown_identity"
    assert _c(c.pk).version == 1


def test_not_a_face_selected_and_whole_cluster(rv, annotator_client):
    from facecurate.runs.models import RunFace

    a, b = rv["clusters"][0], rv["clusters"][1]
    f = _members(a)[-1]
    resp = annotator_client.post(f"/api/clusters/{a.pk}/not-a-face/", {"version": 1, "faces": [f]}, format="json")
    assert resp.status_code == 200 and RunFace.objects.get(pk=f).excluded == "not_a_face"
    resp = annotator_client.post(f"/api/clusters/{b.pk}/not-a-face/", {"version": 1}, format="json")
    assert resp.status_code == 200, resp.content
    b2 = _c(b.pk)
    assert b2.size == 0 and b2.review_state == "dismissed"
    assert RunFace.objects.filter(original_cluster=b, excluded="not_a_face").count() == b.size
    assert_consistent(rv["run"])


def test_skip_is_recorded_and_changes_nothing(rv, annotator_client):
    c = rv["clusters"][0]
    before = _snapshot(rv["run"])
    resp = annotator_client.post(f"/api/clusters/{c.pk}/skip/", {"version": 1}, format="json")
    assert resp.status_code == 200 and resp.json()["action"]["kind"] == "skip"
    assert _snapshot(rv["run"]) == before


def test_audit_log_lists_actions_of_a_run(rv, annotator_client):
    a, b = rv["clusters"][0], rv["clusters"][1]
    annotator_client.post(f"/api/clusters/{a.pk}/confirm/", {"version": 1}, format="json")
    annotator_client.post(f"/api/clusters/{b.pk}/reject/", {"version": 1, "faces": [rv["outliers"][b.pk]]},
                          format="json")
    page = annotator_client.get(f"/api/review-actions/?run={rv['run'].pk}&user=me").json()
    assert [r["kind"] for r in page["results"]] == ["reject", "confirm"]
    assert page["results"][0]["user"] == "anna" and "rejected 1 face" in page["results"][0]["summary"]
    assert annotator_client.get("/api/review-actions/?run=999999").json()["count"] == 0


# --- bad requests change nothing -------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["other_cluster", "other_run", "unknown_face", "no_faces", "merge_self",
                                  "move_other_run", "unknown_cluster", "unknown_target", "stale", "no_version",
                                  "split_all", "move_self"])
def test_bad_requests_are_refused_whole(rv, annotator_client, case):
    a, b = rv["clusters"][0], rv["clusters"][1]
    other_run, other_clusters, other_out, _ = small_run(2, 5, name="second")
    foreign = _members(other_clusters[0])[0]
    mine = _members(a)[:2]
    url, body, status, code = {
        "other_cluster": (f"{a.pk}/reject/", {"version": 1, "faces": mine + [_members(b)[0]]}, 400, "not_in_cluster"),
        "other_run": (f"{a.pk}/reject/", {"version": 1, "faces": mine + [foreign]}, 400, "other_run"),
        "unknown_face": (f"{a.pk}/move/", {"version": 1, "faces": mine + [10 ** 9], "target": b.pk}, 400,
                         "unknown_face"),
        "no_faces": (f"{a.pk}/reject/", {"version": 1, "faces": []}, 400, None),
        "merge_self": (f"{a.pk}/merge/", {"version": 1, "other": a.pk}, 400, "same_cluster"),
        "move_self": (f"{a.pk}/move/", {"version": 1, "faces": mine, "target": a.pk}, 400, "same_cluster"),
        "move_other_run": (f"{a.pk}/move/", {"version": 1, "faces": mine, "target": other_clusters[0].pk}, 400,
                           "other_run"),
        "unknown_cluster": ("999999/confirm/", {"version": 1}, 404, "unknown_cluster"),
        "unknown_target": (f"{a.pk}/merge/", {"version": 1, "other": 999999}, 404, "unknown_cluster"),
        "stale": (f"{a.pk}/split/", {"version": 7, "faces": mine}, 409, "stale_version"),
        "no_version": (f"{a.pk}/confirm/", {}, 400, None),
        "split_all": (f"{a.pk}/split/", {"version": 1, "faces": _members(a)}, 400, "split_all"),
    }[case]
    before, n = (_snapshot(rv["run"]), _snapshot(other_run)), _actions()
    resp = annotator_client.post(f"/api/clusters/{url}", body, format="json")
    assert resp.status_code == status, resp.content
    data = resp.json()
    assert data["detail"] and data["code"]
    if code:
        assert data["code"] == code
    if case in ("other_cluster", "other_run", "unknown_face"):
        assert [r["ok"] for r in data["results"]] == [True, True, False]
    assert (_snapshot(rv["run"]), _snapshot(other_run)) == before and _actions() == n


def test_acting_on_a_cluster_someone_else_holds(rv, annotator_client):
    from facecurate.runs.services import review

    bob, _ = make_user("bob", "annotator")
    a, b = rv["clusters"][0], rv["clusters"][1]
    review.lease(bob, b.pk)
    before = _snapshot(rv["run"])
    for url, body in ((f"{b.pk}/confirm/", {"version": 1}),
                      (f"{a.pk}/merge/", {"version": 1, "other": b.pk}),
                      (f"{a.pk}/move/", {"version": 1, "faces": _members(a)[:1], "target": b.pk})):
        resp = annotator_client.post(f"/api/clusters/{url}", body, format="json")
        assert resp.status_code == 409 and resp.json()["code"] == "leased", resp.content
        assert "bob is reviewing" in resp.json()["detail"]
    assert _snapshot(rv["run"]) == before


# --- on a real run -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_review_a_real_glint_run(worker, staff_client, annotator_client):
    """A real pipeline run over all of glint-sample: the queue's most doubtful cluster, its faces, its
    suggestions, then a merge with the best suggestion and a confirm through the API."""
    unlabeled = featured_dataset("glint", "glint", np.arange(1402), labeled=False)
    resp = staff_client.post("/api/runs/", {"unlabeled_dataset": unlabeled.pk}, format="json")
    assert resp.status_code == 202, resp.content
    assert wait_for_job(resp.json()["job"]["id"], timeout=300).state == "succeeded"
    run_id = resp.json()["id"]
    queue = annotator_client.get(f"/api/runs/{run_id}/clusters/?limit=5").json()
    top = queue["results"][0]
    assert top["priority"] >= queue["results"][1]["priority"]
    faces = annotator_client.get(f"/api/clusters/{top['id']}/faces/?limit=50").json()["results"]
    assert [f["p_minus"] for f in faces] == sorted((f["p_minus"] for f in faces), reverse=True)
    big = annotator_client.get(f"/api/runs/{run_id}/clusters/?ordering=size&limit=1").json()["results"][0]
    sugg = annotator_client.get(f"/api/clusters/{big['id']}/suggestions/").json()
    other = sugg["merges"][0]
    resp = annotator_client.post(f"/api/clusters/{big['id']}/merge/", {"version": big["version"], "other": other["id"],
                                 "other_version": other["version"]}, format="json")
    assert resp.status_code == 200, resp.content
    merged = {c["id"]: c for c in resp.json()["clusters"]}
    assert merged[big["id"]]["size"] == big["size"] + other["size"] and merged[other["id"]]["size"] == 0
    resp = annotator_client.post(f"/api/clusters/{big['id']}/confirm/",
                                 {"version": merged[big["id"]]["version"]}, format="json")
    assert resp.status_code == 200
    from facecurate.runs.models import PipelineRun

    run = PipelineRun.objects.get(pk=run_id)
    assert_consistent(run)
    assert staff_client.get(f"/api/runs/{run_id}/").json()["reviewed"]["confirmed"] == 1
