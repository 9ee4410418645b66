"""Soft weighting is (1 - p-)^gamma: a retraining whose pseudo-labeled faces have no p- fails saying so,
instead of quietly training on the labeled faces alone; hard weighting trains on them."""
from __future__ import annotations

import numpy as np
import pytest

from facecurate.jobs.runner import JobFailed
from facecurate.recognition.services.retrain import Gathered, check_options, training_set
from pipeline.retraining.training_set import UnlabeledFaces


def _gathered(p_minus: float) -> Gathered:
    n = 12
    unl = UnlabeledFaces(run_id=np.ones(n, np.int64), face_id=np.arange(100, 100 + n), cluster_id=np.repeat([0, 1, 2], 4),
                         cluster_confirmed=np.zeros(n, bool), cluster_assigned_identity=np.full(n, -1),
                         overlap_state=np.zeros(n, np.int64), predicted_identity=np.full(n, -1),
                         p_minus=np.full(n, p_minus))
    return Gathered(labeled_face_ids=np.arange(6), labeled_identity=np.repeat([7, 8], 3),
                    held_out_face_ids=np.zeros(0, np.int64), held_out_identity=np.zeros(0, np.int64), unlabeled=unl)


def test_soft_without_p_minus_fails_with_the_reason():
    with pytest.raises(JobFailed, match="soft weighting needs p-"):
        training_set(_gathered(np.nan), check_options({"weighting": "soft"}))


def test_soft_with_p_minus_and_hard_without_both_train_on_pseudo_labels():
    ts, _, report = training_set(_gathered(0.2), check_options({"weighting": "soft", "gamma": 2}))
    assert report["kept"]["pseudo"] == 12 and np.allclose(ts.weight[ts.source == "pseudo"], 0.8 ** 2)
    ts, _, report = training_set(_gathered(np.nan), check_options({"weighting": "hard"}))
    assert report["kept"]["pseudo"] == 12 and np.all(ts.weight == 1)
