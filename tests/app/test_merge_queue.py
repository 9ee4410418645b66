"""The merge queue and the recall-aware review queue (issue 16): candidate pairs from the run's
centroid kNN, computed once per run; yes merges through the review service, no is recorded and not
asked again; several suggestions accepted at once; a rejected face is offered its likely clusters; the
one queue orders merges and clean-ups by expected pairwise errors fixed per action."""
from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from tests.app.conftest import make_user
from tests.app.review_fixtures import assert_consistent, small_run


def _split(run, cluster, n: int):
    """Split ``n`` faces of ``cluster`` into a new cluster as if the clusterer had (original_cluster too)."""
    from facecurate.runs.models import Cluster, RunFace
    from facecurate.runs.services.review import refresh_stats

    new = Cluster.objects.create(run=run, number=Cluster.objects.filter(run=run).count())
    ids = list(RunFace.objects.filter(cluster=cluster).order_by("p_minus", "id").values_list("id", flat=True)[:n])
    RunFace.objects.filter(pk__in=ids).update(cluster=new, original_cluster=new)
    for c in (cluster, new):
        refresh_stats(c)
        c.save()
    return new


@pytest.fixture
def mq(db):
    run, clusters, outliers, labeled = small_run(people=4, per=12)
    halves = [_split(run, clusters[0], 5), _split(run, clusters[1], 4)]
    user, _ = make_user("ann", role="annotator")
    client = APIClient()
    client.force_authenticate(user)
    return {"run": run, "clusters": clusters, "halves": halves, "outliers": outliers, "user": user, "client": client}


def _c(pk):
    from facecurate.runs.models import Cluster

    return Cluster.objects.get(pk=pk)


def test_split_people_head_the_merge_queue_and_candidates_are_computed_once(mq, django_assert_max_num_queries):
    from facecurate.recognition.models import Artifact

    run, c, h = mq["run"], mq["clusters"], mq["halves"]
    resp = mq["client"].get(f"/api/runs/{run.pk}/merge-queue/")
    assert resp.status_code == 200, resp.content
    items = resp.json()
    top = {frozenset((i["cluster"], i["other"])) for i in items[:2]}
    assert top == {frozenset((c[0].pk, h[0].pk)), frozenset((c[1].pk, h[1].pk))}
    assert all(0 <= i["probability"] <= 1 for i in items)
    from facecurate.runs.services.merge_queue import candidates
    from pipeline.review.merge_model import probability_floor

    floor = probability_floor()
    assert 0 < floor < 0.5 and items[0]["probability"] > 0.5
    assert min(i["probability"] for i in items if i["kind"] == "merge") >= floor  # negligible pairs not offered
    assert (candidates(run)["prob"] < floor).any()  # though the candidates hold some
    assert [i["per_action"] for i in items] == sorted((i["per_action"] for i in items), reverse=True)
    arts = Artifact.objects.filter(path__endswith="merge_candidates.npz")
    assert arts.count() == 1
    stamp = arts.get().sha256
    mq["client"].get(f"/api/runs/{run.pk}/merge-queue/")
    assert Artifact.objects.filter(path__endswith="merge_candidates.npz").get().sha256 == stamp


def test_yes_merges_through_the_review_service_and_no_is_not_asked_again(mq):
    from facecurate.runs.models import ReviewAction

    run, c, h, client = mq["run"], mq["clusters"], mq["halves"], mq["client"]
    big, small = c[0], h[0]
    r = client.post(f"/api/runs/{run.pk}/merge-answer/", {"cluster": small.pk, "version": small.version,
                                                          "other": big.pk, "other_version": big.version,
                                                          "same": True}, format="json")
    assert r.status_code == 200, r.content
    assert _c(small.pk).size == 0 and _c(small.pk).review_state == "dismissed"  # the smaller goes into the larger
    assert _c(big.pk).size == 12
    assert ReviewAction.objects.filter(run=run, kind="merge").count() == 1
    assert_consistent(run)
    # "no" on the next pair: recorded, gone from the queue, nothing changed
    item = client.get(f"/api/runs/{run.pk}/merge-queue/").json()[0]
    pair = frozenset((item["cluster"], item["other"]))
    r = client.post(f"/api/runs/{run.pk}/merge-answer/", {"cluster": item["cluster"], "version": 1,
                                                          "other": item["other"], "same": False}, format="json")
    assert r.status_code == 200, r.content
    assert all(frozenset((i["cluster"], i["other"])) != pair
               for i in client.get(f"/api/runs/{run.pk}/merge-queue/").json() if i["kind"] == "merge")
    # the pair that mentioned the merged-away cluster now stands for the cluster it went into
    left = client.get(f"/api/runs/{run.pk}/merge-queue/").json()
    assert all(small.pk not in (i["cluster"], i["other"]) for i in left)
    # undo brings the pair back
    no = ReviewAction.objects.filter(run=run, kind="distinct").get()
    assert client.post(f"/api/review-actions/{no.pk}/undo/").status_code == 200
    assert any(frozenset((i["cluster"], i["other"])) == pair
               for i in client.get(f"/api/runs/{run.pk}/merge-queue/").json() if i["kind"] == "merge")


def test_stale_version_changes_nothing(mq):
    run, c, h = mq["run"], mq["clusters"], mq["halves"]
    r = mq["client"].post(f"/api/runs/{run.pk}/merge-answer/", {"cluster": h[0].pk, "version": 7, "other": c[0].pk,
                                                                "other_version": c[0].version, "same": True},
                          format="json")
    assert r.status_code == 409 and r.json()["code"] == "stale_version"
    assert _c(h[0].pk).size == 5


def test_accept_several_suggestions_at_once(mq):
    from facecurate.runs.models import ReviewAction

    run, c, h, client = mq["run"], mq["clusters"], mq["halves"], mq["client"]
    r = client.post(f"/api/clusters/{c[0].pk}/accept-merges/", {"version": c[0].version, "others": [
        {"id": h[0].pk, "version": h[0].version}, {"id": h[1].pk, "version": h[1].version}]}, format="json")
    assert r.status_code == 200, r.content
    assert _c(c[0].pk).size == 7 + 5 + 4 and _c(h[0].pk).size == 0 == _c(h[1].pk).size
    assert ReviewAction.objects.filter(run=run, kind="merge").count() == 2
    # all or nothing: one stale version refuses the lot
    r = client.post(f"/api/clusters/{c[2].pk}/accept-merges/", {"version": c[2].version, "others": [
        {"id": c[3].pk, "version": c[3].version}, {"id": c[1].pk, "version": 99}]}, format="json")
    assert r.status_code == 409
    assert _c(c[3].pk).size == 12 and ReviewAction.objects.filter(run=run, kind="merge").count() == 2
    assert_consistent(run)


def test_a_rejected_face_is_offered_its_likely_clusters(mq):
    from facecurate.runs.services import review

    run, c, client = mq["run"], mq["clusters"], mq["client"]
    outlier = mq["outliers"][c[1].pk]  # person 0's last face, planted in person 1's cluster
    review.reject(mq["user"], c[1].pk, c[1].version, [outlier])
    offers = client.get(f"/api/runs/{run.pk}/merge-queue/?face={outlier}").json()
    assert offers and all(o["kind"] == "place" and o["face"] == outlier for o in offers)
    home = {c[0].pk, mq["halves"][0].pk}
    assert offers[0]["cluster"] in home
    tgt = _c(offers[0]["cluster"])
    r = client.post(f"/api/runs/{run.pk}/merge-answer/", {"cluster": tgt.pk, "version": tgt.version,
                                                          "face": outlier, "same": True}, format="json")
    assert r.status_code == 200, r.content
    from facecurate.runs.models import RunFace

    assert RunFace.objects.get(pk=outlier).cluster_id == tgt.pk and RunFace.objects.get(pk=outlier).excluded == ""
    assert_consistent(run)


def test_review_queue_interleaves_merges_and_clean_ups_by_gain_per_action(mq):
    run = mq["run"]
    items = mq["client"].get(f"/api/runs/{run.pk}/review-queue/?limit=200").json()
    kinds = [i["kind"] for i in items]
    assert "merge" in kinds and "clean" in kinds
    assert [i["per_action"] for i in items] == sorted((i["per_action"] for i in items), reverse=True)
    assert kinds[0] == "merge"  # a split person is worth more than a planted outlier here
    cleans = [i for i in items if i["kind"] == "clean"]
    assert all(i["gain"] > 0 and 1 <= i["actions"] <= 2 for i in cleans)



def test_review_queue_offers_a_cluster_with_all_its_likely_partners_and_one_answer_takes_them(mq):
    from facecurate.runs.models import ReviewAction
    from facecurate.runs.services import merge_queue

    run, c, h, user = mq["run"], mq["clusters"], mq["halves"], mq["user"]
    groups = [i for i in merge_queue.review_items(run) if i.kind == "merge"]
    assert groups and all(i.others and i.other == i.others[0]["id"] for i in groups)
    assert all(len({o["id"] for o in i.others}) == len(i.others) and i.cluster not in {o["id"] for o in i.others}
               for i in groups)
    api = mq["client"].get(f"/api/runs/{run.pk}/review-queue/?limit=200").json()
    row = next(i for i in api if i["kind"] == "merge" and i["cluster"] == c[0].pk)
    assert row["others"] and all(str(o["id"]) in row["clusters"] for o in row["others"])  # each partner's faces shown
    g = next(i for i in groups if i.cluster == c[0].pk)
    assert g.others[0]["id"] == h[0].pk  # its split-off half is its most likely partner
    others = [{"id": o["id"], "version": _c(o["id"]).version} for o in g.others]
    merge_queue.answer_group(user, c[0].pk, _c(c[0].pk).version, others, [h[0].pk])
    assert _c(c[0].pk).size == 12 and _c(h[0].pk).size == 0
    nos = ReviewAction.objects.filter(run=run, kind="distinct").count()
    assert nos == len(others) - 1  # the rest recorded as "no": not offered again with this cluster
    after = [i for i in merge_queue.review_items(run) if i.kind == "merge" and i.cluster == c[0].pk]
    assert all(o["id"] not in {x["id"] for x in others} for i in after for o in i.others)
    assert_consistent(run)


def test_review_queue_shows_a_rejected_face_with_its_likely_clusters_for_one_decision(mq):
    from facecurate.runs.models import Cluster, ReviewAction, RunFace
    from facecurate.runs.services import merge_queue, review

    run, c, user = mq["run"], mq["clusters"], mq["user"]
    outlier = mq["outliers"][c[1].pk]  # person 0's last face, planted in person 1's cluster
    review.reject(user, c[1].pk, c[1].version, [outlier])
    item = next(i for i in merge_queue.review_items(run) if i.kind == "place" and i.face == outlier)
    ids = [o["id"] for o in item.others]
    assert len(ids) > 1 and item.cluster == ids[0] and ids[0] in {c[0].pk, mq["halves"][0].pk}
    sizes = {x: _c(x).size for x in ids}
    assert item.gain == pytest.approx(sum(o["probability"] * sizes[o["id"]] for o in item.others))
    others = [{"id": x, "version": _c(x).version} for x in ids[1:]]
    merge_queue.answer_face_group(user, outlier, others, None)  # none of the rest is its person
    assert ReviewAction.objects.filter(run=run, kind="distinct").count() == len(others)
    item = next(i for i in merge_queue.review_items(run) if i.kind == "place" and i.face == outlier)
    assert [o["id"] for o in item.others] == ids[:1]  # the ones answered no are not offered again
    deep = next(i for i in merge_queue.group_items(run, floor=0.0, deep=True) if i.kind == "place")
    live = set(Cluster.objects.filter(run=run, size__gt=0).values_list("id", flat=True))
    assert {o["id"] for o in deep.others} == live - set(ids[1:])  # the last resort: the next nearest ones too
    merge_queue.answer_face_group(user, outlier, [{"id": ids[0], "version": _c(ids[0]).version}], ids[0])
    assert RunFace.objects.get(pk=outlier).cluster_id == ids[0]
    assert not [i for i in merge_queue.review_items(run) if i.kind == "place"]
    assert_consistent(run)


def test_a_cluster_review_changed_is_paired_with_its_nearest_clusters_as_they_are_now(mq, monkeypatch):
    import numpy as np

    from facecurate.runs.services import merge_queue, review

    run, c, h, user = mq["run"], mq["clusters"], mq["halves"], mq["user"]
    none = {**merge_queue.candidates(run), "a": np.zeros(0, np.int64), "b": np.zeros(0, np.int64), "prob": np.zeros(0)}
    monkeypatch.setattr(merge_queue, "candidates", lambda run: none)  # the build-time kNN found nothing
    assert not [i for i in merge_queue.review_items(run) if i.kind == "merge"]
    review.confirm(user, c[0].pk, _c(c[0].pk).version)  # reviewed: paired again as it is now
    pairs = {frozenset((i.cluster, o["id"])) for i in merge_queue.review_items(run) if i.kind == "merge"
             for o in i.others}
    assert frozenset((c[0].pk, h[0].pk)) in pairs


def test_review_queue_spends_no_clean_up_on_a_cluster_expected_to_be_clean(mq):
    from facecurate.runs.models import RunFace
    from facecurate.runs.services import merge_queue, review

    run, c, h = mq["run"], mq["clusters"], mq["halves"]
    RunFace.objects.filter(cluster=h[0]).update(p_minus=0.01)  # 5 faces, about 0.2 wrong pairs expected
    x = _c(h[0].pk)
    review.refresh_stats(x)
    x.save()
    cleans = {i.cluster for i in merge_queue.review_items(run) if i.kind == "clean"}
    assert h[0].pk not in cleans and c[1].pk in cleans  # c[1] holds a planted outlier


def test_a_face_a_person_placed_counts_as_right_for_clean_ups(mq):
    from facecurate.runs.models import RunFace
    from facecurate.runs.services import merge_queue, review
    from pipeline.review.gain import cleanup_gain
    from pipeline.review.stray_model import probability as stray_probability

    run, c, user = mq["run"], mq["clusters"], mq["user"]
    outlier = mq["outliers"][c[1].pk]  # person 0's last face (p- 0.9), planted in person 1's cluster
    review.reject(user, c[1].pk, c[1].version, [outlier])
    merge_queue.answer_face_group(user, outlier, [{"id": c[0].pk, "version": _c(c[0].pk).version}], c[0].pk)
    item = next(i for i in merge_queue.review_items(run) if i.kind == "clean" and i.cluster == c[0].pk)
    ps = list(RunFace.objects.filter(cluster=c[0]).exclude(pk=outlier).values_list("p_minus", flat=True))
    assert item.gain == pytest.approx(cleanup_gain(stray_probability([*ps, 0.0], len(ps) + 1))[0])


def test_review_queue_offers_the_pairs_under_the_floor_once_nothing_else_is_left(mq, monkeypatch):
    from facecurate.runs.services import merge_queue

    run, c, h = mq["run"], mq["clusters"], mq["halves"]
    monkeypatch.setattr("pipeline.review.merge_model.probability_floor", lambda: 1.01)  # every pair under it
    monkeypatch.setattr(merge_queue, "clean_items", lambda run, **kw: [])
    assert not merge_queue.group_items(run)
    items = merge_queue.review_items(run)
    assert items and all(i.kind == "merge" for i in items)
    assert {items[0].cluster, items[0].other} in ({c[0].pk, h[0].pk}, {c[1].pk, h[1].pk})


def test_under_both_floors_merges_and_small_clean_ups_are_offered_together(mq, monkeypatch):
    from facecurate.runs.services import merge_queue

    run, c = mq["run"], mq["clusters"]
    monkeypatch.setattr("pipeline.review.merge_model.probability_floor", lambda: 1.01)  # every pair under it
    monkeypatch.setattr("pipeline.review.gain.CLEAN_MIN", 1e9)  # and every clean-up under its floor
    assert not merge_queue.group_items(run) and not merge_queue.clean_items(run)
    items = merge_queue.review_items(run)
    kinds = {i.kind for i in items}
    assert kinds == {"merge", "clean"} and c[1].pk in {i.cluster for i in items if i.kind == "clean"}
    per = [i.per_action for i in items]
    assert per == sorted(per, reverse=True)  # one order, by gain per action


def test_faces_a_person_merged_in_count_as_right_for_clean_ups(mq):
    from facecurate.runs.models import RunFace
    from facecurate.runs.services import merge_queue
    from pipeline.review.gain import cleanup_gain
    from pipeline.review.stray_model import probability as stray_probability

    run, c, h, user = mq["run"], mq["clusters"], mq["halves"], mq["user"]
    half = list(RunFace.objects.filter(cluster=h[0]).values_list("id", flat=True))
    RunFace.objects.filter(pk__in=half).update(p_minus=0.5)  # unsure of the small cluster they were in
    merge_queue.answer_group(user, c[0].pk, _c(c[0].pk).version, [{"id": h[0].pk, "version": _c(h[0].pk).version}],
                             [h[0].pk])
    item = next(i for i in merge_queue.review_items(run) if i.kind == "clean" and i.cluster == c[0].pk)
    own = list(RunFace.objects.filter(cluster=c[0]).exclude(pk__in=half).values_list("p_minus", flat=True))
    assert item.gain == pytest.approx(cleanup_gain(stray_probability([*own, *[0.0] * len(half)], len(own) + len(half)))[0])


def test_when_every_candidate_is_answered_the_queue_goes_past_the_answered_ones(mq, monkeypatch):
    import numpy as np

    from facecurate.runs.services import merge_queue, review

    run, c, h, user = mq["run"], mq["clusters"], mq["halves"], mq["user"]
    monkeypatch.setattr(merge_queue, "clean_items", lambda run, **kw: [])
    monkeypatch.setattr(merge_queue, "PAIR_K", 1)  # each cluster paired with its nearest one only
    none = {**merge_queue.candidates(run), "a": np.zeros(0, np.int64), "b": np.zeros(0, np.int64), "prob": np.zeros(0)}
    monkeypatch.setattr(merge_queue, "candidates", lambda run: none)  # the build-time kNN found nothing
    assert [i.cluster for i in merge_queue.review_items(run)]  # the deep pass pairs every cluster now
    for x in merge_queue.review_items(run):  # answer no to every pair it offers, once
        for o in x.others:
            if {x.cluster, o["id"]} not in ({c[0].pk, h[0].pk}, {c[1].pk, h[1].pk}):
                review.distinct(user, x.cluster, other_cluster_id=o["id"])
    pairs = {frozenset((i.cluster, o["id"])) for i in merge_queue.review_items(run) for o in i.others}
    assert frozenset((c[0].pk, h[0].pk)) in pairs and frozenset((c[1].pk, h[1].pk)) in pairs


def test_the_last_resort_cleans_what_merges_brought_in(mq):
    """A stray that came in with a merged cluster counts as right in the clean-ups (a person put it
    there), and a confirmed cluster is not cleaned again: once nothing else is left, both are offered."""
    from facecurate.runs.services import merge_queue, review

    run, c, user = mq["run"], mq["clusters"], mq["user"]
    review.confirm(user, c[0].pk, _c(c[0].pk).version)
    assert c[0].pk not in {i.cluster for i in merge_queue.clean_items(run, deep=True)}  # confirmed, unchanged
    review.merge(user, c[0].pk, _c(c[0].pk).version, c[1].pk)  # c[1] holds a planted stray
    assert _c(c[0].pk).review_state == "confirmed"
    assert c[0].pk not in {i.cluster for i in merge_queue.clean_items(run)}
    deep = {i.cluster: i for i in merge_queue.clean_items(run, deep=True)}
    assert c[0].pk in deep and deep[c[0].pk].gain > 1.0  # the stray at its own p- (0.9)
    review.confirm(user, c[0].pk, _c(c[0].pk).version)  # looked at again: off the list
    assert c[0].pk not in {i.cluster for i in merge_queue.clean_items(run, deep=True)}


def test_an_unchanged_cluster_is_paired_with_a_changed_one_that_came_near():
    import numpy as np

    from facecurate.runs.services.merge_queue import _fresh_pairs, _Now
    from pipeline.review.candidates import nearest_others

    ids = np.arange(10, 140, 10)
    emb = np.zeros((13, 3), np.float32)
    emb[0], emb[2] = [1, 0, 0], [0, 1, 0]  # clusters 10 and 30
    emb[3:] = np.c_[np.linspace(-0.2, 0.2, 10), np.full(10, -0.2), np.ones(10)]  # the rest, far from both
    before = emb.copy()
    before[1] = [-1, 0, 0]  # cluster 20 was far from cluster 10 when the candidates were built
    emb[1] = [0.5, 0.86, 0]  # then it grew: nearest to 30, and now cluster 10's nearest
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    before /= np.linalg.norm(before, axis=1, keepdims=True)
    nbr, nbr_sim = nearest_others(before, 10)
    cand = {"clusters": ids, "nbr": ids[nbr], "nbr_sim": nbr_sim}
    now = _Now(ids, np.arange(13), ids, np.zeros(13), emb)  # one face a cluster
    forward = _fresh_pairs(now, {20}, 1)  # cluster 20's own nearest only
    both = _fresh_pairs(now, {20}, 1, cand)
    assert (20, 30) in forward and (10, 20) not in forward
    assert (10, 20) in both and forward <= both and all(20 in pair for pair in both)
    assert _fresh_pairs(now, {20}, 1, {"clusters": ids}) == forward  # artifacts built before: as before


def test_the_runs_last_stage_builds_the_candidates_so_a_listing_does_not(mq, monkeypatch):
    from facecurate.recognition.models import Artifact
    from facecurate.runs.models import PipelineRun
    from facecurate.runs.services import merge_queue
    from facecurate.runs.services.orchestrate import STAGE_FUNCS
    from facecurate.runs.services.stages import art_rel

    run = mq["run"]
    assert PipelineRun.STAGES[-2:] == ("store", "candidates")
    assert not Artifact.objects.filter(path=art_rel(run, merge_queue.NAME)).exists()
    STAGE_FUNCS["candidates"](None, run)
    assert Artifact.objects.filter(path=art_rel(run, merge_queue.NAME)).exists()

    def no_build(_run):
        raise AssertionError("the listing built the candidates again")

    monkeypatch.setattr(merge_queue, "build", no_build)
    assert merge_queue.review_items(run)


def test_the_queue_reads_faces_whitened_by_the_clusters_as_review_left_them(db):
    """Every listing whitens the run's faces by the within-cluster scatter of the live clusters then
    (pipeline/clustering/wccn.py): after a merge the transform is the merged clusters', not the build's.
    (320 faces of 8 people: enough for the scatter; the 48-face runs above are left unwhitened.)"""
    from facecurate.runs.services import merge_queue as m
    from pipeline.clustering.wccn import whiten, within_class_whitening
    from pipeline.review.candidates import WHITEN_SHRINK

    run, c, _, _ = small_run(people=8, per=40, name="glint-white")
    user, _ = make_user("wendy", role="annotator")
    client = APIClient()
    client.force_authenticate(user)

    def now_and_raw():
        now = m._current(run, m._live(run))
        faces = list(m.RunFace.objects.filter(pk__in=now.rf.tolist()).order_by("id").values_list("face_id", flat=True))
        raw = m._embeddings(run, faces)
        return now, raw / np.linalg.norm(raw, axis=1, keepdims=True)

    before, raw = now_and_raw()
    assert np.allclose(before.emb, whiten(raw, within_class_whitening(raw, before.lab, WHITEN_SHRINK)), atol=1e-5)
    assert not np.allclose(before.emb, raw, atol=1e-3)
    r = client.post(f"/api/runs/{run.pk}/merge-answer/", {"cluster": c[1].pk, "version": c[1].version,
                                                          "other": c[0].pk, "other_version": c[0].version,
                                                          "same": True}, format="json")
    assert r.status_code == 200, r.content
    after, raw = now_and_raw()
    assert np.allclose(after.emb, whiten(raw, within_class_whitening(raw, after.lab, WHITEN_SHRINK)), atol=1e-5)
    assert not np.allclose(after.emb, before.emb, atol=1e-4)  # the merged cluster's scatter, not the build's


def test_once_the_likely_merges_are_done_a_lone_face_is_shown_its_next_nearest_clusters(mq, monkeypatch):
    """A cluster of one face left after the likely merges is looked for past its nearest clusters, a group at a
    time and before the pairs under the probability floor (there, the split people's halves)."""
    from facecurate.runs.services import merge_queue, review

    run, c, user = mq["run"], mq["clusters"], mq["user"]
    single = _split(run, c[2], 1)
    monkeypatch.setattr("pipeline.review.merge_model.probability_floor", lambda: 1.01)  # every pair under it
    monkeypatch.setattr(merge_queue, "clean_items", lambda run, **kw: [])
    items = merge_queue.review_items(run)
    assert {i.cluster for i in items} == {single.pk}  # the halves' pairs wait
    assert c[2].pk in {o["id"] for o in items[0].others}
    monkeypatch.setattr("pipeline.review.gain.MAX_PARTNERS", 1)  # one cluster at a time
    offered = []
    while c[2].pk not in offered:
        item = next(i for i in merge_queue.review_items(run) if i.cluster == single.pk)
        offered.append(item.others[0]["id"])
        if offered[-1] != c[2].pk:
            review.distinct(user, single.pk, other_cluster_id=offered[-1])
        assert len(offered) == len(set(offered)) <= len(merge_queue._live(run))  # never the same one again


def test_a_lone_face_accepted_in_a_group_joins_its_persons_cluster_which_keeps_its_name_and_confirm(mq):
    from facecurate.runs.services import merge_queue, review

    run, c, user = mq["run"], mq["clusters"], mq["user"]
    single = _split(run, c[2], 1)
    review.confirm(user, c[2].pk, _c(c[2].pk).version)
    cl = _c(c[2].pk)
    cl.name = "Person three"
    cl.save()
    others = [{"id": c[2].pk, "version": _c(c[2].pk).version}, {"id": c[3].pk, "version": _c(c[3].pk).version}]
    merge_queue.answer_group(user, single.pk, _c(single.pk).version, others, [c[2].pk])
    kept = _c(c[2].pk)
    assert (kept.size, kept.name, kept.review_state) == (12, "Person three", "confirmed")
    assert _c(single.pk).size == 0 and _c(single.pk).review_state == "dismissed"
    assert _c(c[3].pk).size == 12  # recorded as another person, untouched
