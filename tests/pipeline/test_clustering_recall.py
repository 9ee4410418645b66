"""The recall fixes for Infomap (pipeline/clustering/recall.py): shared-neighbour counts, edge
reweighting, and singleton attachment, on small hand-made graphs and synthetic clusters."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.clustering.knn import KnnGraph, build_knn
from pipeline.clustering.methods import cluster
from pipeline.clustering.recall import attach_singletons, reweight_edges, shared_neighbours


def _blobs(people=6, per=12, noise=0.35, seed=0, dim=32):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(people, dim))
    x = np.repeat(c, per, 0) + noise * rng.normal(size=(people * per, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(people), per)


def test_shared_neighbours_counts_both_lists_with_themselves():
    # 0: [1, 2]; 1: [0, 2]; 2: [0, 3]; 3: [2, -1]
    g = KnnGraph(np.array([[1, 2], [0, 2], [0, 3], [2, -1]]), np.array([[.9, .8], [.9, .7], [.8, .6], [.6, -np.inf]]))
    c = shared_neighbours(g, np.array([0, 0, 2]), np.array([1, 3, 3]))
    # {0,1,2} & {1,0,2} = 3; {0,1,2} & {3,2} = 1; {2,0,3} & {3,2} = 2
    assert c.tolist() == [3.0, 1.0, 2.0]


def test_reweighting_keeps_edges_and_only_scales_them():
    x, _ = _blobs()
    g = build_knn(x, 10)
    s0, d0, w0 = reweight_edges(g, 0.3, 0.0)
    s1, d1, w1 = reweight_edges(g, 0.3, 1.0)
    assert np.array_equal(s0, s1) and np.array_equal(d0, d1)
    assert np.all(w1 <= w0 + 1e-6) and np.all(w1 > 0)
    assert not np.allclose(w0, w1)


def test_a_singleton_joins_the_cluster_it_clearly_belongs_to_and_not_a_tie():
    x, y = _blobs(people=3, per=10, noise=0.2)
    g = build_knn(x, 8)
    labels = y.copy()
    labels[0] = 3  # face 0 of person 0 left alone
    out = attach_singletons(labels, x.astype(np.float64), g, attach_sim=0.3, attach_margin=0.05)
    assert out[0] == 0 and np.array_equal(out[1:], labels[1:])
    # an impossible bar: it stays alone
    out = attach_singletons(labels, x.astype(np.float64), g, attach_sim=1.01, attach_margin=0.0)
    assert out[0] == 3
    with pytest.raises(ValueError):
        attach_singletons(labels[:-1], x, g, attach_sim=0.3, attach_margin=0.0)


def test_infomap_recall_is_a_method_and_clusters_blobs():
    x, y = _blobs()
    lab = cluster(x, "infomap-recall", k=10)
    assert lab.shape == y.shape and lab.dtype == np.int64
    # every predicted cluster is one person
    for c in np.unique(lab):
        assert np.unique(y[lab == c]).size == 1
    lab2 = cluster(x, "infomap-recall", k=10, attach_sim=None, power=0.0)
    assert lab2.shape == y.shape


def test_an_explicit_none_reaches_the_method_and_switches_attachment_off(monkeypatch):
    import pipeline.clustering.recall as recall

    calls = []
    monkeypatch.setattr(recall, "attach_singletons", lambda labels, *a, **kw: calls.append(kw) or labels)
    x, _ = _blobs()
    cluster(x, "infomap-recall", k=10)
    assert len(calls) == 1  # the default attaches
    cluster(x, "infomap-recall", k=10, attach_sim=None)
    assert len(calls) == 1  # None given: no attachment (it used to fall back to the default 0.5)
