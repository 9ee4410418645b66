"""Clustering metrics: exact on hand-computed examples, equal to brute force and scikit-learn."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import normalized_mutual_info_score

from pipeline.clustering.metrics import (
    bcubed_prf,
    cluster_counts,
    contingency,
    evaluate_clustering,
    nmi,
    pairwise_prf,
)

TRUE = np.array([0, 0, 0, 1, 1, 2])
PRED = np.array([0, 0, 1, 1, 1, -1])  # -1: unclustered -> its own singleton


def test_pairwise_hand_example():
    # same-class pairs predicted together: (0,1) and (3,4) = 2; predicted pairs 1 + 3 = 4; true pairs 3 + 1 = 4
    p, r, f = pairwise_prf(TRUE, PRED)
    assert (p, r, f) == pytest.approx((0.5, 0.5, 0.5))


def test_bcubed_hand_example():
    # precision per sample: 1, 1, 1/3, 2/3, 2/3, 1 -> 14/3 / 6; recall: 2/3, 2/3, 1/3, 1, 1, 1 -> 14/3 / 6
    p, r, f = bcubed_prf(TRUE, PRED)
    assert (p, r, f) == pytest.approx((7 / 9, 7 / 9, 7 / 9))


def test_asymmetric_hand_example():
    true = np.array([0, 0, 0, 0])
    pred = np.array([0, 0, 1, 2])
    # pairwise: 1 predicted pair, correct; 6 true pairs -> P=1, R=1/6
    assert pairwise_prf(true, pred) == pytest.approx((1.0, 1 / 6, 2 * (1 / 6) / (1 + 1 / 6)))
    # bcubed recall: 2/4, 2/4, 1/4, 1/4 -> 1.5/4
    p, r, _ = bcubed_prf(true, pred)
    assert (p, r) == pytest.approx((1.0, 0.375))


def test_unclustered_samples_are_singletons():
    true = np.array([0, 0, 1, 1])
    all_noise = np.array([-1, -1, -1, -1])
    assert pairwise_prf(true, all_noise) == pytest.approx((1.0, 0.0, 0.0))
    assert cluster_counts(all_noise) == {"clusters": 4, "singletons": 4}
    # two -1 must not be merged into one cluster
    assert pairwise_prf(np.array([0, 0]), np.array([-1, -1]))[1] == 0.0


def test_perfect_and_permuted_labels():
    true = np.array(["a", "a", "b", "c", "c", "c"])
    pred = np.array([7, 7, 3, 9, 9, 9])
    r = evaluate_clustering(true, pred)
    for key in ("pairwise_precision", "pairwise_recall", "pairwise_f", "bcubed_f", "nmi"):
        assert r[key] == pytest.approx(1.0)
    assert r["clusters"] == r["true_clusters"] == 3
    assert r["singletons"] == r["true_singletons"] == 1


def test_all_singletons_both_sides_is_perfect():
    x = np.arange(5)
    assert pairwise_prf(x, x) == (1.0, 1.0, 1.0)
    assert bcubed_prf(x, x) == pytest.approx((1.0, 1.0, 1.0))


def test_everything_in_one_cluster():
    true = np.array([0, 0, 1, 1])
    pred = np.zeros(4, int)
    p, r, _ = pairwise_prf(true, pred)
    assert (p, r) == pytest.approx((2 / 6, 1.0))
    assert nmi(true, pred) == 0.0


@pytest.mark.parametrize(
    "true, pred, match",
    [
        (np.array([0, 1]), np.array([0, 1, 2]), "differ in length"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "1-D"),
        (np.array([]), np.array([]), "empty"),
        (np.array([0.5, 1.0]), np.array([0, 1]), "integer"),
        (np.array([0, 1]), np.array([0.0, np.nan]), "integer"),
    ],
)
def test_bad_inputs_raise(true, pred, match):
    with pytest.raises(ValueError, match=match):
        evaluate_clustering(true, pred)


def _brute_pairwise(true, pred):
    tp = pp = tt = 0
    for i, j in combinations(range(len(true)), 2):
        same_t, same_p = true[i] == true[j], pred[i] == pred[j]
        tp += same_t and same_p
        pp += same_p
        tt += same_t
    p = 1.0 if pp == 0 else tp / pp
    r = 1.0 if tt == 0 else tp / tt
    return p, r


def _brute_bcubed(true, pred):
    n = len(true)
    p = np.mean([np.sum((pred == pred[i]) & (true == true[i])) / np.sum(pred == pred[i]) for i in range(n)])
    r = np.mean([np.sum((pred == pred[i]) & (true == true[i])) / np.sum(true == true[i]) for i in range(n)])
    return p, r


labels = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(labels)
def test_matches_brute_force_and_sklearn(pairs):
    true = np.array([a for a, _ in pairs])
    pred = np.array([b for _, b in pairs])
    assert pairwise_prf(true, pred)[:2] == pytest.approx(_brute_pairwise(true, pred))
    assert bcubed_prf(true, pred)[:2] == pytest.approx(_brute_bcubed(true, pred))
    assert nmi(true, pred) == pytest.approx(normalized_mutual_info_score(true, pred), abs=1e-9)


def test_contingency_counts():
    m = contingency(TRUE, PRED).toarray()
    assert m.sum() == 6
    assert sorted(m[m > 0].tolist()) == [1, 1, 2, 2]


def test_large_input_is_fast_and_sparse():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 100_000, 1_000_000)
    r = evaluate_clustering(true, true)
    assert r["pairwise_f"] == pytest.approx(1.0) and r["nmi"] == pytest.approx(1.0)
