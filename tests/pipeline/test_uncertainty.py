"""pipeline.uncertainty: softmax regression, entropy / max-logit / margin, calibrated and paper p-, calibration
tables, cluster priority and the wrongly-clustered ground truth."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats

from pipeline.features import l2_normalize
from pipeline.uncertainty import (
    CALIBRATION_PATH,
    Calibrator,
    LogisticPart,
    PMinusConfig,
    SoftmaxConfig,
    average_precision,
    baseline_scores,
    calibration_table,
    cluster_geometry,
    cluster_priority,
    cluster_truth,
    clustering_uncertainty,
    cross_fit_folds,
    fit_calibrator,
    fit_logistic,
    fit_p_minus,
    fit_softmax,
    load_calibrator,
    mixture_p_minus,
    nearest_cluster_similarity,
    softmax_scores,
    wrongly_clustered,
)
from tests.pipeline.recognizer_data import att_features

FAST = SoftmaxConfig(epochs=1, cross_fit=0, device="cpu", num_threads=2)
PAPER = PMinusConfig(method="paper")


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
    r = clustering_uncertainty(x, y, FAST, PAPER)
    assert r.degenerate is None, r.report["message"]
    arrays = r.arrays()
    np.testing.assert_array_equal(arrays["p_minus"], arrays["p_minus_paper"])
    for key in ("p_minus", "entropy", "max_logit", "margin", "assigned_margin", "loo_cos", "other_cos"):
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
    few = clustering_uncertainty(x[:20], y[:20], FAST, PAPER)
    assert few.degenerate == "too_few"
    # clean clusters: every margin is high, there is no low (wrong) mode to fit -- said so, scores still given
    clean = clustering_uncertainty(x, y, FAST, PAPER)
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
    r = clustering_uncertainty(x, y, SoftmaxConfig(epochs=0, cross_fit=5, device="cpu"), PAPER)
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
    assert r.report["p_minus_method"] == "calibrated"
    ap = average_precision(r.p_minus, wrong)
    assert ap > 0.5 > 4 * wrong.mean(), ap  # base rate 0.1
    assert average_precision(r.p_minus_paper, wrong) > 0.3  # the paper's p- is reported next to it
    # the review queue: the 10 split-off pieces and the 10 clusters with an outlier come first
    truth = cluster_truth(clusters, wrong)
    assert r.priority.shape == truth.shape
    assert average_precision(np.nan_to_num(r.priority, nan=-1.0), truth) > 0.5


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
    plain = clustering_uncertainty(x2, y2, cfg, PAPER)
    spared = clustering_uncertainty(x2, y2, replace(cfg, unseen_quantile=0.5), PAPER)
    assert np.all(plain.assigned_margin[-12:] < 0)
    assert np.median(spared.assigned_margin[-12:]) > np.median(plain.assigned_margin[-12:]) + 0.5
    unstrat = replace(cfg, unseen_quantile=0.5, stratify=False)
    assert np.median(clustering_uncertainty(x2, y2, unstrat, PAPER).assigned_margin[-12:]) > 0.5
    with pytest.raises(ValueError, match="unseen_quantile"):
        SoftmaxConfig(unseen_quantile=2.0)


# ------------------------------------------------------------------------------------------------ folds
def test_cross_fit_folds_are_stratified_by_cluster():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 300, size=3000)
    folds = cross_fit_folds(y, 5, seed=0)
    assert folds.min() == 0 and folds.max() == 4
    for c in np.unique(y):
        f = folds[y == c]
        if f.size >= 2:  # no cluster of >= 2 faces sits in one fold, so none is unseen by a training fold
            assert np.unique(f).size == min(f.size, 5)
    assert np.bincount(folds).min() > 0.15 * len(y)
    pairs = np.repeat(np.arange(500), 2)  # 500 clusters of two: random folds leave ~100 unseen, stratified none
    plain = cross_fit_folds(pairs, 5, seed=0, stratify=False)
    assert np.sum(plain[::2] == plain[1::2]) > 50
    assert np.all(cross_fit_folds(pairs, 5, seed=0)[::2] != cross_fit_folds(pairs, 5, seed=0)[1::2])


# ------------------------------------------------------------------------------------------------ geometry
def test_cluster_geometry_matches_brute_force():
    x, y = blobs(n_per=6, k=5, noise=0.9, seed=5)
    y = y.copy()
    y[0] = 5  # a singleton
    y[1] = -1  # unclustered
    g = cluster_geometry(x, y)
    assert np.isnan(g["size"][1]) and g["other_cluster"][1] == -1
    assert g["singleton"][0] and g["size"][0] == 1 and np.isnan(g["loo_cos"][0])
    for i in range(len(y)):
        if y[i] < 0:
            continue
        mates = np.flatnonzero((y == y[i]) & (np.arange(len(y)) != i))
        assert g["size"][i] == mates.size + 1
        if mates.size:
            c = x[mates].sum(0)
            assert g["loo_cos"][i] == pytest.approx(float(x[i] @ c / np.linalg.norm(c)), abs=1e-5)
        sims = {c: float(x[i] @ x[y == c].sum(0) / np.linalg.norm(x[y == c].sum(0)))
                for c in np.unique(y[y >= 0]) if c != y[i]}
        best = max(sims, key=sims.get)
        assert g["other_cluster"][i] == best and g["other_cos"][i] == pytest.approx(sims[best], abs=1e-5)
        assert g["other_size"][i] == (y == best).sum()


# ------------------------------------------------------------------------------------------------ calibration
def test_fit_logistic_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 2)) * [1.0, 3.0] + [0.0, 5.0]
    eta = -2.0 + 1.5 * x[:, 0] - 0.5 * x[:, 1]
    y = rng.random(20000) < 1 / (1 + np.exp(-eta))
    coef, b = fit_logistic(x, y, l2=1e-6)
    np.testing.assert_allclose(coef, [1.5, -0.5], atol=0.08)
    assert b == pytest.approx(-2.0, abs=0.3)


def _synthetic_clusters(seed):
    """Clusters with planted outliers (a face from a far identity) and singletons near a cluster (splits)."""
    rng = np.random.default_rng(seed)
    d, k = 32, 60
    centers = l2_normalize(rng.normal(size=(k, d)))
    x, y, truth = [], [], []
    for c in range(k):
        n = int(rng.integers(2, 12))
        x.append(centers[c] + 0.12 * rng.normal(size=(n, d)))
        y += [c] * n
        truth += [c] * n
    x = l2_normalize(np.concatenate(x))
    y, truth = np.array(y), np.array(truth)
    out = rng.choice(len(y), 60, replace=False)  # outliers: move into a random other cluster
    for i in out:
        y[i] = (y[i] + 1 + rng.integers(k - 1)) % k
    # singletons: 40 lonely (new identities, right) and 40 split off an existing cluster (wrong)
    lonely = l2_normalize(rng.normal(size=(40, d)))
    near_id = rng.integers(0, k, 40)
    near = l2_normalize(centers[near_id] + 0.12 * rng.normal(size=(40, d)))
    x = np.concatenate([x, lonely, near])
    y = np.concatenate([y, k + np.arange(80)])
    truth = np.concatenate([truth, 1000 + np.arange(40), near_id])
    return x, y, truth


def test_calibrator_learns_calibrated_probabilities_on_synthetic_clusters():
    """Fitted on one synthetic draw, the calibrator's p- on an independent draw ranks the planted errors and its
    calibration bins match the observed wrong rates; singletons use their own model."""
    feats = ["loo_cos", "other_cos", "log_size", "inv_size"]
    x, y, t = _synthetic_clusters(0)
    g = cluster_geometry(x, y)
    cal = fit_calibrator(g, wrongly_clustered(y, t)["wrong"], feats, ["other_cos"], l2=1e-3)
    x2, y2, t2 = _synthetic_clusters(1)
    g2 = cluster_geometry(x2, y2)
    wrong2 = wrongly_clustered(y2, t2)["wrong"]
    p = cal.p_minus(g2)
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    assert wrong2.mean() < 0.25
    assert average_precision(p, wrong2) > 0.8, average_precision(p, wrong2)
    tab = calibration_table(p, wrong2, bins=(0, 0.1, 0.5, 0.9, 1.0), min_count=20)
    assert tab["max_deviation"] < 0.1, tab
    # singletons: split-off ones (near a cluster) get a high p-, lonely new identities a low one
    single = g2["singleton"]
    assert np.median(p[single & wrong2]) > 0.8 and np.median(p[single & ~wrong2]) < 0.2
    # the member model is not applied to singletons: changing it leaves singleton p- alone
    cal2 = Calibrator(LogisticPart(feats, cal.member.coef * 0, 5.0), cal.singleton)
    np.testing.assert_allclose(cal2.p_minus(g2)[single], p[single], rtol=1e-6)
    assert np.allclose(cal2.p_minus(g2)[~single], 1 / (1 + np.exp(-5.0)), rtol=1e-5)
    # save / load round trip
    cal.save("/tmp/_facecurate_test_cal.json")
    np.testing.assert_allclose(load_calibrator("/tmp/_facecurate_test_cal.json").p_minus(g2), p, rtol=1e-6)


def test_calibration_table_and_average_precision_on_known_values():
    p = np.array([0.02] * 100 + [0.5] * 40 + [0.95] * 10)
    wrong = np.array([1] * 2 + [0] * 98 + [1] * 30 + [0] * 10 + [1] * 10).astype(bool)
    tab = calibration_table(p, wrong, min_count=30)
    by_lo = {b["lo"]: b for b in tab["bins"]}
    assert by_lo[0.0]["count"] == 100 and by_lo[0.0]["observed"] == pytest.approx(0.02)
    assert by_lo[0.5]["observed"] == pytest.approx(0.75) and by_lo[0.5]["deviation"] == pytest.approx(0.25)
    assert by_lo[0.9]["count"] == 10 and by_lo[0.9]["hi"] == 1.0
    assert tab["max_deviation"] == pytest.approx(0.25)  # the 10-face bin is too small to count
    assert tab["ece"] == pytest.approx((0 * 100 + 0.25 * 40 + 0.05 * 10) / 150)
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    s = np.round(rng.random(500), 2)  # ties
    yy = rng.random(500) < s
    assert average_precision(s, yy) == pytest.approx(average_precision_score(yy, s), abs=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        average_precision(np.array([np.nan, 1.0]), np.array([True, False]))


def test_baseline_scores_directions():
    g = {"size": np.array([1.0, 2.0, 5.0]), "loo_cos": np.array([np.nan, 0.9, 0.2])}
    b = baseline_scores(g, np.array([0.1, 0.5, 0.9]), singleton_loo=0.0)
    np.testing.assert_allclose(b["small_cluster"], [-1, -2, -5])
    np.testing.assert_allclose(b["loo_distance"], [0.0, 0.1, 0.8])
    np.testing.assert_allclose(b["top2_margin"], [-0.1, -0.5, -0.9])


def test_mixture_p_minus_is_a_posterior_of_the_low_mode():
    rng = np.random.default_rng(2)
    am = np.concatenate([-0.2 + 0.5 * rng.random(500), 1 - stats.weibull_min.rvs(1.2, scale=0.05, size=5000,
                                                                                   random_state=rng)])
    p, info = mixture_p_minus(np.clip(am, -1, 1))
    assert info["degenerate"] is None
    assert np.mean(p[:500] > 0.5) > 0.9 and np.mean(p[500:] < 0.1) > 0.95
    bad, info = mixture_p_minus(np.full(100, 0.9))
    assert info["degenerate"] == "one_mode" and np.isnan(bad).all()


def test_calibrated_default_with_a_given_calibrator_and_methods():
    x, y, t = _synthetic_clusters(3)
    g = cluster_geometry(x, y)
    cal = fit_calibrator(g, wrongly_clustered(y, t)["wrong"], ["loo_cos", "other_cos", "log_size"],
                         ["other_cos"])
    r = clustering_uncertainty(x, y, SoftmaxConfig(epochs=0, cross_fit=5, device="cpu"), calibrator=cal)
    assert r.degenerate is None and r.report["p_minus_method"] == "calibrated"
    assert np.isfinite(r.p_minus).all() and r.priority.shape == (y.max() + 1,)
    assert r.report["expected_wrong_faces"] == pytest.approx(float(r.p_minus.sum()), rel=1e-5)
    json.dumps(r.report)
    with pytest.raises(ValueError, match="method"):
        PMinusConfig(method="weibull")


# ------------------------------------------------------------------------------------------------ priority
def test_cluster_priority_rules_and_ordering():
    lab = np.array([0, 0, 0, 1, 1, 3, -1])
    p = np.array([0.1, 0.1, 0.5, 0.2, 0.2, 0.9, 0.99])
    ew = cluster_priority(lab, p, rule="expected_wrong")
    assert ew.shape == (4,) and np.isnan(ew[2])
    np.testing.assert_allclose(ew[[0, 1, 3]], [0.7, 0.4, 0.9])
    anyw = cluster_priority(lab, p, rule="any_wrong")
    np.testing.assert_allclose(anyw[[0, 1, 3]], [1 - 0.9 * 0.9 * 0.5, 1 - 0.8 * 0.8, 0.9])
    np.testing.assert_allclose(cluster_priority(lab, p, rule="max")[[0, 1, 3]], [0.5, 0.2, 0.9])
    np.testing.assert_allclose(cluster_priority(lab, p, rule="mean")[[0, 1, 3]], [0.7 / 3, 0.2, 0.9])
    order = np.argsort(-np.nan_to_num(ew, nan=-1))
    assert order.tolist()[:3] == [3, 0, 1]
    with pytest.raises(ValueError, match="rule"):
        cluster_priority(lab, p, rule="median")
    with pytest.raises(ValueError, match="features"):
        cluster_priority(lab, p, merge_weight=1.0)


def test_cluster_priority_merge_term_lifts_near_duplicate_clusters():
    rng = np.random.default_rng(0)
    d = 16
    c = l2_normalize(rng.normal(size=(3, d)))
    near = l2_normalize(c[0] + 0.05 * rng.normal(size=d))  # cluster 1 is a near copy of cluster 0
    cents = np.stack([c[0], near, c[1], c[2]])
    x = l2_normalize(np.repeat(cents, 5, axis=0) + 0.01 * rng.normal(size=(20, d)))
    lab = np.repeat(np.arange(4), 5)
    s = nearest_cluster_similarity(x, lab)
    assert s[0] > 0.95 and s[1] > 0.95 and s[2] < 0.8
    p = np.full(20, 0.01)
    flat = cluster_priority(lab, p, x, rule="expected_wrong")
    merged = cluster_priority(lab, p, x, rule="expected_wrong", merge_weight=1.0, merge_floor=0.3)
    np.testing.assert_allclose(flat, flat[0])
    assert set(np.argsort(-merged)[:2]) == {0, 1}


def test_cluster_truth():
    lab = np.array([0, 0, 1, 2, -1])
    wrong = np.array([False, True, False, False, True])
    np.testing.assert_array_equal(cluster_truth(lab, wrong), [True, False, False])


def test_shipped_calibrator_says_where_it_came_from():
    cal = load_calibrator()
    assert CALIBRATION_PATH.name == "calibration.json"
    assert "LFW training half" in cal.meta["trained_on"]
    assert "inner split" in cal.meta["selection"]["how"]
    assert cal.meta["priority"]["rule"] in ("any_wrong", "expected_wrong", "max", "mean")


def test_calibrator_matches_known_intermediate_wrong_rates():
    """Wrong rates known by construction (a logistic law in the LOO cosine and the nearest-cluster cosine, other for
    singletons): fitted on one draw, the p- bins of another draw are within 0.05 of the observed rates."""
    def draw(seed, n=40000):
        rng = np.random.default_rng(seed)
        size = rng.integers(1, 8, n).astype(float)
        loo = np.where(size > 1, rng.uniform(0.2, 0.9, n), np.nan)
        other = rng.uniform(0.0, 0.8, n)
        eta = np.where(size > 1, 4.0 - 10.0 * np.nan_to_num(loo) + 3.0 * other, -6.0 + 9.0 * other)
        wrong = rng.random(n) < 1 / (1 + np.exp(-eta))
        g = {"size": size, "loo_cos": loo, "other_cos": other, "other_size": np.full(n, 3.0)}
        return g, wrong

    g, wrong = draw(0)
    cal = fit_calibrator(g, wrong, ["loo_cos", "other_cos"], ["other_cos"], l2=1e-6)
    g2, wrong2 = draw(1)
    p = cal.p_minus(g2)
    tab = calibration_table(p, wrong2)
    middle = [b for b in tab["bins"] if 0.2 <= b["lo"] < 0.8]
    assert len(middle) >= 5 and all(b["count"] >= 300 for b in middle)
    assert tab["max_deviation"] < 0.05, tab
    # a calibrator that ignores the singleton law (one model for all faces) is visibly miscalibrated on singletons
    from pipeline.uncertainty.calibrated import design

    coef, b = fit_logistic(design(g, ["loo_cos", "other_cos"]), wrong)
    p_one = LogisticPart(["loo_cos", "other_cos"], coef, b).predict(g2, slice(None))
    single = g2["size"] == 1
    assert calibration_table(p_one[single], wrong2[single])["max_deviation"] > 0.1
    assert calibration_table(p[single], wrong2[single])["max_deviation"] < 0.05


def test_logistic_part_never_extrapolates_beyond_its_training_range():
    # U-shaped in other_cos, fitted on [0.3, 0.6]: below 0.3 the curve would turn upwards; clipped, it stays put
    part = LogisticPart(["other_cos", "other_cos_sq"], np.array([-96.0, 151.0]), 10.0, [[0.3, 0.6], [0.09, 0.36]])
    g = {"other_cos": np.array([0.0, 0.1, 0.3, 0.6, 0.9])}
    p = part.predict(g, slice(None))
    assert p[0] == pytest.approx(p[2]) and p[1] == pytest.approx(p[2]) and p[4] == pytest.approx(p[3])
    free = LogisticPart(["other_cos", "other_cos_sq"], np.array([-96.0, 151.0]), 10.0)
    assert free.predict(g, slice(None))[0] > 0.99  # what the bounds prevent
    with pytest.raises(ValueError, match="bound"):
        LogisticPart.from_dict({"features": ["other_cos"], "coef": [1.0], "intercept": 0.0, "bounds": []})
