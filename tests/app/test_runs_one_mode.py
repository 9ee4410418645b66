"""Overlap separation in a run decides a single-mode set from the labeled faces' own out-of-fold scores:
an unlabeled set that shares no one with the labeled set comes out all disjoint, one made only of
known people all overlap, and a run with no labeled dataset treats every face as disjoint."""
from __future__ import annotations

import numpy as np
import pytest

from tests.app.conftest import wait_for_job
from tests.app.run_fixtures import featured_dataset, rows_of

ATT = [f"s{i}" for i in range(1, 41)]


def _run(client, unlabeled, labeled):
    resp = client.post("/api/runs/", {"unlabeled_dataset": unlabeled.pk, "labeled_datasets": [d.pk for d in labeled]},
                       format="json")
    assert resp.status_code == 202, resp.content
    job = wait_for_job(resp.json()["job"]["id"], timeout=180)
    assert job.state == "succeeded", job.error
    return client.get(f"/api/runs/{resp.json()['id']}/").json()


@pytest.mark.slow
def test_no_shared_people_is_all_disjoint(worker, staff_client):
    labeled = featured_dataset("att-known", "att", rows_of("att", ATT), labeled=True)
    unlabeled = featured_dataset("glint-all", "glint", np.arange(600), labeled=False)
    run = _run(staff_client, unlabeled, [labeled])
    assert run["counts"]["overlap"] == 0 and run["counts"]["rejected"] == 0
    assert run["counts"]["disjoint"] == 600
    assert run["overlap_report"]["reference"]["genuine"] > 100


@pytest.mark.slow
def test_only_known_people_is_all_overlap(worker, staff_client):
    rows = rows_of("att", ATT)
    first, rest = rows[::2], rows[1::2]  # half of each person's photos labeled, the other half unlabeled
    labeled = featured_dataset("att-half", "att", first, labeled=True)
    unlabeled = featured_dataset("att-other-half", "att", rest, labeled=False)
    run = _run(staff_client, unlabeled, [labeled])
    assert run["counts"]["overlap"] == len(rest) and run["counts"]["disjoint"] == 0
    assert run["counts"]["clusters"] == 0


@pytest.mark.slow
def test_no_labeled_dataset_clusters_everything(worker, staff_client):
    unlabeled = featured_dataset("att-alone", "att", rows_of("att", ATT[:10]), labeled=False)
    run = _run(staff_client, unlabeled, [])
    assert run["counts"]["disjoint"] == 100 and run["overlap_report"]["degenerate"] == "no_labeled"
    assert 5 <= run["counts"]["clusters"] <= 20
