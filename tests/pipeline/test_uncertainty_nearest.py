"""pipeline.uncertainty.nearest: softmax regression over each face's nearest clusters (the scale path of p-)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from pipeline.features import l2_normalize
from pipeline.uncertainty import SoftmaxConfig, cluster_geometry, clustering_uncertainty
from pipeline.uncertainty.nearest import candidates_for, fit_nearest, nearest_clusters, nearest_scores

CFG = SoftmaxConfig(epochs=2, cross_fit=0, device="cpu", num_threads=2)


def people(k=40, n_per=12, d=32, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.normal(size=(k, d)))
    y = np.repeat(np.arange(k), n_per)
    return l2_normalize(centres[y] + noise * rng.normal(size=(y.size, d)) / np.sqrt(d)).astype(np.float32), y


def test_the_table_lists_each_cluster_first_then_its_nearest_by_prototype():
    x, y = people()
    table = nearest_clusters(x, y, 40, 5)
    assert table.shape == (40, 5)
    np.testing.assert_array_equal(table[:, 0], np.arange(40))
    assert all(len(set(row)) == 5 for row in table.tolist())
    proto = l2_normalize(np.stack([x[y == c].mean(0) for c in range(40)]))
    sims = proto @ proto.T
    np.fill_diagonal(sims, -np.inf)
    want = np.argsort(-sims, axis=1)[:, :4]
    np.testing.assert_array_equal(np.sort(table[:, 1:], axis=1), np.sort(want, axis=1))


def test_the_table_refuses_a_width_it_cannot_fill():
    x, y = people(k=4)
    with pytest.raises(ValueError, match="2 <= C <= K"):
        nearest_clusters(x, y, 4, 5)


def test_auto_keeps_the_full_softmax_for_small_sets_and_narrows_large_ones():
    cfg = SoftmaxConfig()
    assert candidates_for(cfg, 15_000, 7_000) == 0  # LFW-sized: every cluster a class, as calibrated
    assert candidates_for(cfg, 1_000_000, 100_000) == cfg.auto_candidates
    assert candidates_for(replace(cfg, candidates=0), 1_000_000, 100_000) == 0
    assert candidates_for(replace(cfg, candidates=16), 1_000, 10) == 0  # no narrower than all
    with pytest.raises(ValueError):
        SoftmaxConfig(candidates=1)


def test_a_face_put_in_the_wrong_cluster_gets_a_negative_assigned_margin():
    x, y = people()
    table = nearest_clusters(x, y, 40, 8)
    model = fit_nearest(x, y, table, CFG)
    assert model.candidates.shape == (40, 8)
    sc = nearest_scores(model, x, y)
    assert np.mean(sc["predicted"] == y) > 0.95
    assert np.all(sc["margin"] >= 0) and np.all(sc["margin"] <= 1) and np.all(sc["entropy"] >= 0)
    # the first face of cluster 0, scored as if it were in its nearest neighbour cluster
    wrong = np.array([table[0, 1]])
    moved = nearest_scores(model, x[:1], wrong)
    assert moved["assigned_margin"][0] < 0 < sc["assigned_margin"][0]
    assert moved["predicted"][0] == 0


def test_geometry_over_candidates_equals_the_full_search_when_every_cluster_is_a_candidate():
    x, y = people(k=10)
    full = cluster_geometry(x, y)
    narrow = cluster_geometry(x, y, candidates=nearest_clusters(x, y, 10, 10))
    for key in ("other_cos", "other_cluster", "loo_cos", "size"):
        np.testing.assert_allclose(narrow[key], full[key], rtol=1e-5, atol=1e-6)


def test_p_minus_from_the_nearest_clusters_ranks_faces_as_the_full_softmax_does():
    x, truth = people(k=60, noise=0.9, seed=1)
    rng = np.random.default_rng(2)
    labels = truth.copy()
    moved = rng.choice(len(labels), 40, replace=False)
    table = nearest_clusters(x, truth, 60, 2)
    labels[moved] = table[truth[moved], 1]  # a mistake a clusterer makes: into a nearby person's cluster
    base = SoftmaxConfig(device="cpu", num_threads=2)
    full = clustering_uncertainty(x, labels, replace(base, candidates=0))
    narrow = clustering_uncertainty(x, labels, replace(base, candidates=16))
    assert full.report["softmax_classes_per_face"] == 60 and narrow.report["softmax_classes_per_face"] == 16
    assert stats.spearmanr(full.p_minus, narrow.p_minus).statistic > 0.9
    wrong = np.zeros(len(labels), bool)
    wrong[moved] = True
    assert narrow.p_minus[wrong].mean() > 3 * narrow.p_minus[~wrong].mean()
