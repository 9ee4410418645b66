"""pipeline.uncertainty: softmax regression, entropy / max-logit / margin, p- and the wrongly-clustered ground truth."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats

from pipeline.features import l2_normalize
from pipeline.uncertainty import (
    PMinusConfig,
    SoftmaxConfig,
    clustering_uncertainty,
    fit_p_minus,
    fit_softmax,
    softmax_scores,
    wrongly_clustered,
)
from tests.pipeline.recognizer_data import att_features

FAST = SoftmaxConfig(epochs=1, cross_fit=0, device="cpu", num_threads=2)


def blobs(n_per=30, k=12, d=16, noise=0.25, seed=0):
    rng = np.random.default_rng(seed)
    centers = l2_normalize(rng.normal(size=(k, d)))
    y = np.repeat(np.arange(k), n_per)
    x = l2_normalize(centers[y] + noise * rng.normal(size=(y.size, d)) / np.sqrt(d) * 3)
    return x, y


# ------------------------------------------------------------------------------------------------ ground truth
def test_wrongly_clustered_outliers_and_splits():
    # identities:   a a a b | a a | b b | c | a
    truth = np.array(list("aaab") + list("aa") + list("bb") + ["c"] + ["a"])
    clusters = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3, -1])
    g = wrongly_clustered(clusters, truth)
    # cluster 0: majority a, 'b' is an outlier; cluster 1: majority a but smaller than cluster 0 -> split
    np.testing.assert_array_equal(g["outlier"], [0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(g["split"], [0, 0, 0, 0, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(g["wrong"], g["outlier"] | g["split"])
    assert g["unclustered"][-1] and not g["wrong"][-1]


def test_wrongly_clustered_split_tie_goes_to_lowest_cluster_id():
    truth = np.array(["a", "a", "a", "a"])
    g = wrongly_clustered(np.array([5, 5, 2, 2]), truth)
    np.testing.assert_array_equal(g["split"], [1, 1, 0, 0])


def test_perfect_clustering_has_no_wrong_faces():
    truth = np.repeat(np.array(["x", "y", "z"]), 4)
    assert not wrongly_clustered(np.repeat([7, 3, 9], 4), truth)["wrong"].any()


# ------------------------------------------------------------------------------------------------ softmax
def test_softmax_regression_learns_and_scores_are_consistent():
    x, y = blobs()
    calls = []
    model = fit_softmax(x, y, replace(FAST, epochs=3, init="zeros", lr=0.05),
                        progress=lambda c, t, **i: calls.append((c, t, i["loss"])))
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    assert calls[-1][2] < calls[0][2]
    sc = softmax_scores(model, x, y)
    assert np.mean(sc["predicted"] == y) > 0.95
    k = model.num_classes
    assert np.all(sc["entropy"] >= -1e-6) and np.all(sc["entropy"] <= np.log(k) + 1e-5)
    assert np.all((sc["margin"] >= 0) & (sc["margin"] <= 1))
    agree = sc["predicted"] == y
    np.testing.assert_allclose(sc["assigned_margin"][agree], sc["margin"][agree], atol=1e-6)
    assert np.all(sc["assigned_margin"][~agree] <= 0)
    for key in ("entropy", "max_logit", "margin", "assigned_margin"):
        assert sc[key].dtype == np.float32 and sc[key].shape == y.shape


def test_softmax_batches_are_capped_by_logit_budget():
    x, y = blobs(n_per=5, k=40)
    # a logit budget of 64 with K = 40 forces batches of 16 rows (the floor); the result still learns
    model = fit_softmax(x, y, replace(FAST, max_batch_logits=64, epochs=2))
    assert np.mean(softmax_scores(model, x)["predicted"] == y) > 0.9


def test_softmax_rejects_bad_input():
    x, y = blobs(n_per=3, k=3)
    with pytest.raises(ValueError, match="labels must have shape"):
        fit_softmax(x, y[:-1], FAST)
    with pytest.raises(ValueError, match="integer"):
        fit_softmax(x, y.astype(float), FAST)
    with pytest.raises(ValueError, match="at least two"):
        fit_softmax(x, np.zeros(len(y), int), FAST)
    with pytest.raises(ValueError, match="NaN"):
        fit_softmax(np.full_like(x, np.nan), y, FAST)


# ------------------------------------------------------------------------------------------------ p-
def test_p_minus_recovers_the_low_mode_weibull_and_is_a_decreasing_probability():
    rng = np.random.default_rng(1)
    wrong = stats.weibull_min.rvs(1.6, scale=0.15, size=3000, random_state=rng)
    right = 1 - stats.weibull_min.rvs(1.2, scale=0.02, size=20000, random_state=rng)
    m = np.clip(np.concatenate([wrong, right]), 0, 1)
    fit = fit_p_minus(m)
    assert fit.degenerate is None
    assert fit.weibull.shape == pytest.approx(1.6, rel=0.15)
    assert fit.weibull.scale == pytest.approx(0.15, rel=0.15)
    grid = np.linspace(0, 1, 101)
    p = fit.p_minus(grid)
    assert p[0] == pytest.approx(1.0) and np.all(np.diff(p) <= 0) and np.all((p >= 0) & (p <= 1))
    assert fit.p_minus(np.array([-0.3]))[0] == pytest.approx(1.0)
    # p- is the Weibull survival function: half the wrong mode lies above its median margin
    med = fit.weibull.ppf(0.5)
    assert fit.p_minus(np.array([med]))[0] == pytest.approx(0.5, abs=1e-6)
    # it separates the two populations
    assert np.mean(fit.p_minus(right) < 0.01) > 0.99 and np.mean(fit.p_minus(wrong) > 0.01) > 0.9


@pytest.mark.parametrize("margins,reason", [(np.linspace(0, 1, 20), "too_few"), (np.full(100, 0.7), "constant")])
def test_p_minus_degenerate(margins, reason):
    fit = fit_p_minus(margins)
    assert fit.degenerate == reason
    assert np.isnan(fit.p_minus(margins)).all()


def test_clustering_uncertainty_arrays_report_and_unclustered_rows():
    x, y = blobs(n_per=20, k=10, noise=0.8)
    y = y.copy()
    y[:5] = -1  # unclustered
    r = clustering_uncertainty(x, y, FAST)
    assert r.degenerate is None, r.report["message"]
    arrays = r.arrays()
    for key in ("p_minus", "entropy", "max_logit", "margin", "assigned_margin"):
        assert arrays[key].shape == (len(y),) and arrays[key].dtype == np.float32
        assert np.isnan(arrays[key][:5]).all() and np.isfinite(arrays[key][5:]).all()
    assert np.all(arrays["predicted_cluster"][:5] == -1)
    assert set(np.unique(arrays["predicted_cluster"][5:])) <= set(np.unique(y[5:]))
    json.dumps(r.report)
    assert r.report["thresholds"]["otsu"] > 0


def test_clustering_uncertainty_degenerate_cases():
    x, y = blobs(n_per=20, k=3)
    one = clustering_uncertainty(x, np.zeros(len(y), int), FAST)
    assert one.degenerate == "one_cluster" and np.isnan(one.p_minus).all()
    few = clustering_uncertainty(x[:20], y[:20], FAST)
    assert few.degenerate == "too_few"
    # clean clusters: every margin is high, there is no low (wrong) mode to fit -- said so, scores still given
    clean = clustering_uncertainty(x, y, FAST)
    assert clean.degenerate == "one_mode" and "below Otsu" in clean.report["message"]
    assert np.isnan(clean.p_minus).all() and np.isfinite(clean.margin).all() and np.isfinite(clean.entropy).all()
    with pytest.raises(ValueError, match="integer"):
        clustering_uncertainty(x, y.astype(float), FAST)


def test_cross_fitting_flags_a_split_cluster():
    """Faces of one identity split off into their own cluster: an out-of-fold classifier puts them back into the
    identity's main cluster, so their assigned margin is negative and p- high; in-sample it would memorise them."""
    x, y = blobs(n_per=40, k=8, noise=0.15, seed=2)
    y = y.copy()
    split = np.flatnonzero(y == 0)[:10]
    y[split] = 8  # a small split-off piece of identity 0
    r = clustering_uncertainty(x, y, SoftmaxConfig(epochs=0, cross_fit=5, device="cpu"))
    others = np.setdiff1d(np.arange(len(y)), split)
    assert np.median(r.p_minus[split]) > 0.5
    assert np.median(r.p_minus[others]) < 0.05


def test_real_faces_att_p_minus_finds_split_and_outlier_faces():
    """AT&T: split 3 faces off each of 10 identities into a cluster of their own (splits) and move one face of each
    of 10 other identities into a wrong cluster (outliers); p- must rank those 40 faces far above the base rate."""
    torch.set_num_threads(2)
    fs = att_features()
    ids, _ = fs.label_ids()
    clusters = ids.copy()
    k = int(ids.max()) + 1
    for c in range(10):
        members = np.flatnonzero(ids == c)[:3]
        clusters[members] = k + c
    for c in range(10, 20):
        clusters[np.flatnonzero(ids == c)[0]] = c + 10  # into identity c + 10's cluster
    wrong = wrongly_clustered(clusters, fs.labels)["wrong"]
    assert wrong.sum() == 40
    r = clustering_uncertainty(fs.embeddings, clusters, SoftmaxConfig(epochs=0, cross_fit=5, device="cpu"))
    assert r.degenerate is None, r.report["message"]
    from sklearn.metrics import average_precision_score

    ap = average_precision_score(wrong, r.p_minus)
    assert ap > 0.5 > 4 * wrong.mean(), ap  # base rate 0.1


def test_own_logit_override_replaces_the_own_cluster_logit():
    x, y = blobs(n_per=10, k=5, noise=0.8)
    model = fit_softmax(x, y, replace(FAST, epochs=0))
    base = softmax_scores(model, x, y)
    same = softmax_scores(model, x, y, own_logit=np.full(len(y), np.nan, np.float32))
    np.testing.assert_allclose(same["assigned_margin"], base["assigned_margin"], atol=1e-6)
    high = softmax_scores(model, x, y, own_logit=np.full(len(y), 100.0, np.float32))
    assert np.all(high["assigned_margin"] > 0.99) and np.all(high["own_logit"] == 100.0)
    with pytest.raises(ValueError, match="needs labels"):
        softmax_scores(model, x, own_logit=np.zeros(len(y)))


def test_unseen_quantile_spares_lonely_singletons():
    """Singletons far from every cluster: left as trained they look suspect (own class unseen in the other folds);
    with unseen_quantile they get a typical own-cluster logit and look right."""
    x, y = blobs(n_per=30, k=6, noise=0.6, seed=3)
    rng = np.random.default_rng(4)
    lonely = l2_normalize(rng.normal(size=(12, x.shape[1])))
    x2 = np.concatenate([x, lonely])
    y2 = np.concatenate([y, 6 + np.arange(12)])
    cfg = SoftmaxConfig(epochs=0, cross_fit=5, device="cpu")
    plain = clustering_uncertainty(x2, y2, cfg)
    spared = clustering_uncertainty(x2, y2, replace(cfg, unseen_quantile=0.5))
    assert np.all(plain.assigned_margin[-12:] < 0)
    assert np.median(spared.assigned_margin[-12:]) > 0.5
    with pytest.raises(ValueError, match="unseen_quantile"):
        SoftmaxConfig(unseen_quantile=2.0)
