"""The simulated annotator works like a person (issue 16): through the real review services, one action
per decision, the shipped queue (gain) answering merge pairs and cleaning clusters; it says why it
stopped; the command takes --order, --targets, --passes, --json and reports the greedy oracle beside."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from tests.app.conftest import make_user
from tests.app.review_fixtures import assert_consistent, small_run
from tests.app.test_merge_queue import _split


@pytest.fixture
def split_run(db):
    run, clusters, outliers, labeled = small_run(people=4, per=12)
    _split(run, clusters[0], 5)
    _split(run, clusters[1], 4)
    run.options = {"truth_from_folders": True}
    run.labeled_datasets.clear()
    run.save()
    return run


def test_gain_order_fixes_splits_and_outliers_and_stops_when_the_queue_is_exhausted(split_run):
    from facecurate.runs.models import ReviewAction
    from facecurate.runs.services.simulate import Annotator, Quality, oracle_curve

    user, _ = make_user("sim", role="annotator")
    q = Quality(split_run)
    trace = Annotator(split_run, user, q, max_actions=200).work("gain")
    assert trace.stopped == "queue_exhausted"
    assert trace.pairwise_f[-1] == pytest.approx(1.0)
    assert trace.actions[:2] == ["merge", "merge"]  # the split people first: the most errors per action
    # one decision on a merge group records its yes (merges) and its no's (distinct) at once
    assert len(trace.actions) == len(trace.pairwise_f) - 1 <= ReviewAction.objects.filter(run=split_run).count()
    assert ReviewAction.objects.filter(run=split_run).exclude(kind="distinct").count() == \
        sum(trace.actions.count(k) for k in ("reject", "reject_confirm", "split", "confirm", "place", "assign")) + \
        ReviewAction.objects.filter(run=split_run, kind="merge").count()
    assert set(trace.actions) <= {"merge", "no", "reject", "reject_confirm", "split", "confirm", "place", "assign"}
    # a stray rejected in a clean-up is one decision with the confirm of the rest (the cluster page's R)
    assert "reject_confirm" in trace.actions and "reject" not in trace.actions
    assert all(a.payload.get("confirmed") for a in ReviewAction.objects.filter(run=split_run, kind="reject"))
    assert_consistent(split_run)
    oracle = oracle_curve(q, 200)
    assert oracle[-1] == pytest.approx(1.0)
    assert len(oracle) - 1 <= trace.actions_to(1.0)  # the oracle bounds it


def test_the_limit_is_reported(split_run):
    from facecurate.runs.services.simulate import Annotator, Quality

    user, _ = make_user("sim", role="annotator")
    trace = Annotator(split_run, user, Quality(split_run), max_actions=3).work("gain")
    assert trace.stopped == "limit" and len(trace.actions) == 3
    trace = Annotator(split_run, user, Quality(split_run), max_actions=500).work("size", passes=2)
    assert trace.stopped in ("queue_exhausted", "passes_done")


def test_command_orders_targets_passes_json_and_resets(split_run):
    from facecurate.runs.models import ReviewAction, RunFace

    before = sorted(RunFace.objects.filter(run=split_run).values_list("id", "cluster_id"))
    out = StringIO()
    call_command("simulate_review", split_run.pk, order=["gain", "size"], targets=[0.9, 0.99], passes=2,
                 max_actions=100, json=True, stdout=out)
    data = json.loads(out.getvalue())
    s = data["summaries"]
    assert set(s) == {"gain", "size", "oracle", "oracle_reject"}
    assert s["gain"]["stopped"] == "queue_exhausted" and s["gain"]["actions_to_pairwise_f_0.99"] is not None
    assert s["oracle"]["actions_to_pairwise_f_0.99"] <= s["gain"]["actions_to_pairwise_f_0.99"]
    assert sorted(RunFace.objects.filter(run=split_run).values_list("id", "cluster_id")) == before
    assert not ReviewAction.objects.filter(run=split_run).exists()
    split_run.refresh_from_db()
    assert split_run.metrics["simulated_review"]["curves"]["oracle"]
    out = StringIO()
    call_command("simulate_review", split_run.pk, order=["gain"], targets=[0.9], stop_at=0.9, json=True, stdout=out)
    s = json.loads(out.getvalue())["summaries"]
    assert s["gain"]["stopped"] == "target" and s["gain"]["actions"] == s["gain"]["actions_to_pairwise_f_0.9"]
    assert s["oracle"]["actions"] == s["oracle"]["actions_to_pairwise_f_0.9"]


def test_a_clean_up_splits_another_persons_faces_off_together_and_merges_them_home(db):
    """Three faces of person 1 inside person 0's cluster leave together (one split), and their new
    cluster joins person 1's in one merge: no face is placed back one at a time."""
    from facecurate.runs.models import RunFace
    from facecurate.runs.services.review import refresh_stats
    from facecurate.runs.services.simulate import Annotator, Quality, oracle_curve

    run, clusters, outliers, _ = small_run(people=3, per=12)
    strays = list(RunFace.objects.filter(cluster=clusters[1]).exclude(pk=outliers[clusters[1].pk])
                  .order_by("id").values_list("id", flat=True)[:3])
    RunFace.objects.filter(pk__in=strays).update(cluster=clusters[0], original_cluster=clusters[0], p_minus=0.9)
    for c in clusters[:2]:
        refresh_stats(c)
        c.save()
    run.options = {"truth_from_folders": True}
    run.labeled_datasets.clear()
    run.save()
    user, _ = make_user("sim", role="annotator")
    q = Quality(run)
    trace = Annotator(run, user, q, max_actions=100).work("gain", target=1.0)
    assert trace.stopped == "target", trace.actions
    assert trace.actions.count("split") == 1 and "merge" in trace.actions
    moved = set(RunFace.objects.filter(pk__in=strays).values_list("cluster_id", flat=True))
    assert len(moved) == 1  # together, and with their person
    assert RunFace.objects.filter(pk__in=strays, cluster_id__in=moved).count() == 3
    assert_consistent(run)
    assert oracle_curve(q, 100, target=1.0, split=True)[-1] == pytest.approx(1.0)
