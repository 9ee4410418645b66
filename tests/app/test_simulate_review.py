"""The simulated annotator works a real run's queue through the review services, improves its labeling,
stores the curves for the report page, and leaves the run as it was computed."""
from __future__ import annotations

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from tests.app.conftest import wait_for_job
from tests.app.run_fixtures import featured_dataset

pytestmark = pytest.mark.slow


def test_simulated_review_improves_the_labeling_and_resets(worker, staff_client):
    from facecurate.runs.models import Cluster, PipelineRun, ReviewAction, RunFace

    # 24 glint people with no labeled set: Infomap splits some of them, which the annotator merges back.
    ds = featured_dataset("glint-sim", "glint", np.arange(1402), labeled=False)
    resp = staff_client.post("/api/runs/", {"unlabeled_dataset": ds.pk, "truth_from_folders": True}, format="json")
    job = wait_for_job(resp.json()["job"]["id"], timeout=300)
    assert job.state == "succeeded", job.error
    run = PipelineRun.objects.get(pk=resp.json()["id"])
    before = sorted(RunFace.objects.filter(run=run).values_list("face_id", "cluster_id"))

    call_command("simulate_review", run.pk, max_actions=60)
    run.refresh_from_db()
    sim = run.metrics["simulated_review"]
    assert set(sim["curves"]) == {"gain", "priority", "paper", "size", "random", "oracle", "oracle_reject"}
    start = run.metrics["clustering"]["pairwise_f"]
    for order, pts in sim["curves"].items():
        assert abs(pts[0][1] - start) < 1e-4, order
    pr = sim["summaries"]["priority"]
    assert pr["final_pairwise_f"] > start and pr["actions"] <= 60
    assert set(pr["action_counts"]) <= {"reject", "reject_confirm", "split", "merge", "assign", "confirm"}
    shipped = sim["summaries"]["gain"]
    assert shipped["final_pairwise_f"] > start and shipped["stopped"] in ("limit", "queue_exhausted")
    assert set(shipped["action_counts"]) <= {"reject", "reject_confirm", "split", "merge", "no", "place", "assign",
                                             "confirm"}
    # Put back as computed: same clusters, nothing reviewed, no audit rows left.
    assert sorted(RunFace.objects.filter(run=run).values_list("face_id", "cluster_id")) == before
    assert not ReviewAction.objects.filter(run=run).exists()
    assert set(Cluster.objects.filter(run=run).values_list("review_state", flat=True)) == {"pending"}
    assert staff_client.get(f"/api/runs/{run.pk}/").json()["metrics"]["simulated_review"]["curves"]["priority"]


@pytest.mark.django_db
def test_simulate_review_needs_ground_truth():
    with pytest.raises(CommandError):
        call_command("simulate_review", 999)
