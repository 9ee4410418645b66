"""Issue 17 item 13: a retraining that cannot start is refused before anything heavy runs.

POST /api/retrainings/ with an unlabeled dataset took 7.6 s to answer 400: ``start_retraining`` checked
the training options first, and that builds the training configuration (importing
pipeline.recognition.training and torch) before it looked at the datasets. The datasets are checked
first now; the test makes the option check fail loudly if it runs, and counts the queries."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from facecurate.recognition.services import retrain


@pytest.fixture
def no_heavy_checks(monkeypatch):
    def heavy(*args, **kwargs):
        raise AssertionError("the training configuration was built for a request refused on its datasets")

    monkeypatch.setattr(retrain, "check_options", heavy)
    monkeypatch.setattr(retrain, "train_config", heavy)


@pytest.mark.parametrize("kinds", [["unlabeled"], ["labeled", "unlabeled"]])
def test_an_unlabeled_dataset_is_refused_before_the_options_are_built(staff_client, make_dataset, no_heavy_checks,
                                                                      kinds):
    ids = [make_dataset(name=f"set-{i}", kind=k)["id"] for i, k in enumerate(kinds)]
    staff_client.get("/api/retrainings/")  # the active version and the session exist before counting
    with CaptureQueriesContext(connection) as queries:
        resp = staff_client.post("/api/retrainings/", {"labeled_datasets": ids}, format="json")
    assert resp.status_code == 400, resp.content
    assert resp.json()["code"] == "retrain_refused" and "not labeled" in resp.json()["detail"]
    assert len(queries) <= 8, [q["sql"] for q in queries]  # token, datasets, active version: no job written


def test_no_labeled_dataset_at_all_is_refused_before_the_options_are_built(staff_client, no_heavy_checks):
    resp = staff_client.post("/api/retrainings/", {"labeled_datasets": []}, format="json")
    assert resp.status_code == 400, resp.content
