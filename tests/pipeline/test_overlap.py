"""pipeline.overlap.separation.separate_overlap: overlap / disjoint / rejected from max-logits, degenerate answers, real faces."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pipeline.features import l2_normalize
from pipeline.overlap.separation import (
    DISJOINT,
    OVERLAP,
    REJECTED,
    OverlapConfig,
    otsu_states,
    separate_overlap,
    state_names,
)
from tests.pipeline.recognizer_data import att_features


def cosine_like(n_disjoint=1500, n_overlap=600, seed=0):
    """Max cosine logits shaped like real ones: disjoint around 0.35, overlap around 0.75 with a low tail."""
    rng = np.random.default_rng(seed)
    d = 0.15 + stats.weibull_min.rvs(4.0, scale=0.22, size=n_disjoint, random_state=rng)
    o = 0.93 - stats.weibull_min.rvs(2.0, scale=0.2, size=n_overlap, random_state=rng)
    s = np.concatenate([d, o])
    truth = np.r_[np.zeros(n_disjoint, int), np.ones(n_overlap, int)]
    argmax = rng.integers(0, 50, size=s.size)
    return s, truth, argmax


def test_bimodal_scores_are_separated_with_labels_kept():
    s, truth, am = cosine_like()
    r = separate_overlap(s, am)
    assert r.degenerate is None
    ov, dj = r.state == OVERLAP, r.state == DISJOINT
    assert np.mean(truth[ov] == 1) > 0.995
    assert np.mean(truth[dj] == 0) > 0.995
    assert np.mean(r.state == REJECTED) < 0.15
    np.testing.assert_array_equal(r.label[ov], am[ov])
    assert np.all(r.label[~ov] == -1)
    t = r.thresholds
    assert t["disjoint_at_or_below"] <= t["overlap_at_or_above"]
    assert np.all(s[ov] >= t["overlap_at_or_above"]) and np.all(s[dj] <= t["disjoint_at_or_below"])
    assert r.state.dtype == np.int8 and r.label.dtype == np.int64 and r.posterior.dtype == np.float32
    assert set(state_names(r.state)) <= {"overlap", "disjoint", "rejected"}
    json.dumps(r.report)  # plain JSON for the web UI
    assert sum(r.counts.values()) == s.size


def test_weibull_thresholds_beat_otsu_on_false_negatives():
    s, truth, am = cosine_like(seed=3)
    r = separate_overlap(s, am)
    o = otsu_states(s)
    fnr_otsu = np.mean(o[truth == 1] == DISJOINT)
    fnr_weibull = np.mean(r.state[truth == 1] == DISJOINT)
    assert fnr_weibull <= fnr_otsu


@settings(max_examples=3, deadline=None)
@given(a=st.floats(0.01, 100.0), b=st.floats(-50.0, 50.0))
def test_decisions_do_not_change_under_scaling_or_shifting(a, b):
    s, _, am = cosine_like(600, 300, seed=1)
    cfg = OverlapConfig()
    r1 = separate_overlap(s, am, cfg)
    r2 = separate_overlap(a * s + b, am, cfg)
    assert np.mean(r1.state == r2.state) > 0.999  # only float rounding right at a threshold may differ
    np.testing.assert_allclose(r2.posterior, r1.posterior, atol=1e-4)


def test_too_few_faces_is_an_explicit_answer():
    r = separate_overlap(np.linspace(0, 1, 30), np.zeros(30, int))
    assert r.degenerate == "too_few"
    assert np.all(r.state == REJECTED) and np.all(r.label == -1)
    assert "30 faces" in r.report["message"]


def test_constant_scores_are_an_explicit_answer():
    r = separate_overlap(np.full(100, 0.4), np.zeros(100, int))
    assert r.degenerate == "constant" and np.all(r.state == REJECTED)


@pytest.mark.parametrize("mode", ["all_disjoint", "all_overlap"])
def test_one_mode_is_detected(mode):
    rng = np.random.default_rng(4)
    if mode == "all_disjoint":
        s = 0.15 + stats.weibull_min.rvs(4.0, scale=0.22, size=800, random_state=rng)
    else:
        s = 0.93 - stats.weibull_min.rvs(2.0, scale=0.2, size=800, random_state=rng)
    r = separate_overlap(s, np.zeros(s.size, int))
    assert r.degenerate == "one_mode", r.report.get("diagnostics")
    assert np.all(r.state == REJECTED)
    assert "one mode" in r.report["message"]
    # An absolute threshold (e.g. a known cosine level) turns the lone mode into a decision, said out loud.
    r2 = separate_overlap(s, np.arange(s.size), OverlapConfig(one_mode_threshold=0.5))
    expect = OVERLAP if mode == "all_overlap" else DISJOINT
    assert np.all(r2.state == expect)
    assert r2.report["one_mode_decision"] == ("overlap" if mode == "all_overlap" else "disjoint")
    if expect == OVERLAP:
        np.testing.assert_array_equal(r2.label, np.arange(s.size))


def test_one_normal_mode_is_not_split():
    s = np.random.default_rng(5).normal(0.35, 0.06, 3000)
    assert separate_overlap(s, np.zeros(s.size, int)).degenerate == "one_mode"


def test_non_finite_scores_raise_or_are_rejected():
    s, _, am = cosine_like(400, 200)
    s = s.copy()
    s[[3, 10]] = [np.nan, np.inf]
    with pytest.raises(ValueError, match="NaN or infinite"):
        separate_overlap(s, am)
    r = separate_overlap(s, am, OverlapConfig(nonfinite="reject"))
    assert r.degenerate is None
    assert r.state[3] == REJECTED and r.state[10] == REJECTED
    assert r.report["nonfinite"] == 2
    assert np.isnan(r.posterior[3])


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="1-D"):
        separate_overlap(np.zeros((10, 2)), np.zeros(10, int))
    with pytest.raises(ValueError, match="argmax must have shape"):
        separate_overlap(np.zeros(10), np.zeros(9, int))
    with pytest.raises(ValueError, match="integer"):
        separate_overlap(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="confidence"):
        OverlapConfig(confidence=1.2)


def test_real_faces_att_class_mean_classifier():
    """AT&T faces: 20 labeled identities (5 images each); unlabeled = their other 5 images + 20 unseen identities."""
    fs = att_features()
    ids, names = fs.label_ids()
    rng = np.random.default_rng(0)
    known = rng.permutation(len(names))[:20]
    train, unl, truth = [], [], []
    for c in range(len(names)):
        members = rng.permutation(np.flatnonzero(ids == c))
        if c in known:
            train += members[:5].tolist()
            unl += members[5:].tolist()
            truth += [1] * len(members[5:])
        else:
            unl += members.tolist()
            truth += [0] * len(members)
    train, unl, truth = np.array(train), np.array(unl), np.array(truth)
    cls = np.unique(ids[train])
    means = l2_normalize(np.stack([fs.embeddings[train][ids[train] == c].mean(0) for c in cls]))
    logits = fs.embeddings[unl] @ means.T
    am = logits.argmax(1)
    r = separate_overlap(logits.max(1), am, OverlapConfig(min_faces=50))
    assert r.degenerate is None, r.report["message"]
    fpr = np.mean(r.state[truth == 0] == OVERLAP)
    fnr = np.mean(r.state[truth == 1] == DISJOINT)
    assert fpr < 0.03 and fnr < 0.03, (fpr, fnr, r.counts)
    ov = r.state == OVERLAP
    assert np.mean(cls[r.label[ov]] == ids[unl][ov]) > 0.97  # kept labels point at the right identity
