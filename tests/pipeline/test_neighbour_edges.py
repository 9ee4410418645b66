"""Clusterers that keep people together (pipeline/clustering/neighbour_edges.py): neighbour-overlap edge
probabilities with early stopping (``fces``) and small-cluster attachment (``infomap-attach``)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.clustering.knn import KnnGraph, build_knn
from pipeline.clustering.methods import METHODS, cluster
from pipeline.clustering.neighbour_edges import (
    attach_small_clusters,
    early_stopped_edges,
    edge_probabilities,
    neighbour_distributions,
)


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def split_people(people=2, chunks=2, per=6, spread=1.2, noise=0.35, dim=64, seed=1):
    """Each person's photos fall in ``chunks`` tight groups whose cross-group cosines are below 0.5."""
    rng = np.random.default_rng(seed)
    x, y = [], []
    for p in range(people):
        c = _unit(rng.normal(size=dim))
        for _ in range(chunks):
            centre = _unit(c + spread * _unit(rng.normal(size=dim)))
            x.append(centre + noise / 4 * rng.normal(size=(per, dim)))
            y += [p] * per
    return _unit(np.concatenate(x)).astype(np.float32), np.array(y)


def _same_partition(a, b) -> bool:
    return np.array_equal(a[:, None] == a[None], b[:, None] == b[None])


# a hand-made graph: 0: [1, 2, 3]; 1: [0, 2, 3]; 2: [0, 1, 3]; 3: [4, 2, 0]; 4: [3, 2, 1]
HAND = KnnGraph(np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [4, 2, 0], [3, 2, 1]]),
                np.array([[.9, .8, .3], [.9, .8, .3], [.8, .8, .3], [.9, .3, .3], [.9, .3, .3]]))


def test_neighbour_distributions_are_rows_summing_to_one_with_self_heaviest():
    q = neighbour_distributions(HAND, 0.5).toarray()
    assert q.shape == (5, 5)
    assert np.allclose(q.sum(axis=1), 1.0)
    assert np.all(q.argmax(axis=1) == np.arange(5))
    with pytest.raises(ValueError):
        neighbour_distributions(HAND, 0.0)


def test_edge_probability_is_high_for_a_shared_crowd_and_low_for_a_stray_edge():
    q = neighbour_distributions(HAND, 0.5)
    p = edge_probabilities(q, np.array([0, 0, 3]), np.array([1, 3, 4]))
    # 0 and 1 see the same faces; 0 and 3 share little; 3 and 4 see each other first
    assert p[0] > 0.6 and p[1] < 0.3 and p[2] > p[1]
    assert np.all((p >= 0) & (p <= 1 + 1e-6))
    with pytest.raises(ValueError):
        edge_probabilities(q, np.array([0, 1]), np.array([1]))


def test_early_stopping_drops_everything_after_the_first_weak_neighbour():
    # face 3's list is [4, 2, 0]: 4 passes, 2 fails, and 0 must go too whatever its probability
    src, dst, p = early_stopped_edges(HAND, tau=0.5, min_prob=0.4, threshold=0.0)
    kept = set(zip(src.tolist(), dst.tolist()))
    assert (3, 4) in kept and (3, 2) not in kept and (3, 0) not in kept
    assert (0, 1) in kept and (0, 3) not in kept
    assert np.all(p >= 0.4)
    # face 2 listing the stranger 3 first: early stopping keeps nothing of 2's list, without it 0 and 1 stay
    g = KnnGraph(np.array([[1, 2, 3], [0, 2, 3], [3, 0, 1], [4, 2, 0], [3, 2, 1]]),
                 np.array([[.9, .8, .3], [.9, .8, .3], [.85, .8, .8], [.9, .3, .3], [.9, .3, .3]]))
    src2, dst2, _ = early_stopped_edges(g, tau=0.5, min_prob=0.4, threshold=0.0)
    assert 2 not in src2.tolist()
    src2, dst2, _ = early_stopped_edges(g, tau=0.5, min_prob=0.4, threshold=0.0, early_stop=False)
    assert sorted(dst2[src2 == 2].tolist()) == [0, 1]
    _, _, w = early_stopped_edges(HAND, tau=0.5, min_prob=0.4, threshold=0.0, weight="prob*cos")
    cos = {(i, int(j)): float(c) for i in range(5) for j, c in zip(HAND.indices[i], HAND.sims[i])}
    assert np.allclose(w, p * np.array([cos[e] for e in zip(src.tolist(), dst.tolist())]))
    with pytest.raises(ValueError):
        early_stopped_edges(HAND, tau=0.5, min_prob=0.4, threshold=0.0, weight="cos")
    # a cosine floor stops the walk as well
    src, dst, _ = early_stopped_edges(HAND, tau=0.5, min_prob=0.0, threshold=0.85)
    assert set(zip(src.tolist(), dst.tolist())) == {(0, 1), (1, 0), (3, 4), (4, 3)}


def test_fces_joins_each_person_split_in_two_chunks_but_not_two_people():
    x, y = split_people()
    assert np.unique(cluster(x, "infomap", k=10)).size == 4  # the product default splits each person
    lab = cluster(x, "fces", k=10, threshold=0.2, tau=0.5, min_prob=0.2, weight="prob")
    assert lab.shape == y.shape and lab.dtype == np.int64
    assert _same_partition(lab, y)
    # early stopping at an impossible bar: no edge, every face alone
    assert np.unique(cluster(x, "fces", k=10, threshold=0.2, min_prob=1.01)).size == y.size


def test_small_cluster_joins_its_person_as_a_whole_and_not_a_stranger():
    x, y = split_people(people=3, chunks=1, per=10, noise=0.3)
    labels = y.copy()
    labels[[0, 1]] = 3  # two photos of person 0 split off together
    labels[[20, 21]] = 4  # and two of person 2
    g = build_knn(x, 8)
    out = attach_small_clusters(labels, x, g, attach_sim=0.3, attach_margin=0.05, max_size=2)
    assert out[0] == out[1] == 0 and out[20] == out[21] == 2
    assert np.array_equal(out[2:20], labels[2:20]) and np.array_equal(out[22:], labels[22:])
    # the bars hold: too high a cosine, too wide a margin, or too small a size keeps them apart
    for kw in ({"attach_sim": 1.01, "attach_margin": 0.0}, {"attach_sim": 0.0, "attach_margin": 2.0}):
        assert np.array_equal(attach_small_clusters(labels, x, g, max_size=2, **kw), labels)
    assert np.array_equal(attach_small_clusters(labels, x, g, attach_sim=0.3, attach_margin=0.05, max_size=1), labels)


def test_a_small_cluster_between_two_people_stays_alone():
    x, y = split_people(people=2, chunks=1, per=10, noise=0.2)
    mid = _unit(x[y == 0].mean(0) + x[y == 1].mean(0))[None].astype(np.float32)
    x = np.concatenate([x, mid])
    labels = np.append(y, 2)
    g = build_knn(x, 8)
    out = attach_small_clusters(labels, x, g, attach_sim=0.0, attach_margin=0.1, max_size=2)
    assert out[-1] == 2
    with pytest.raises(ValueError):
        attach_small_clusters(labels[:-1], x, g, attach_sim=0.0, attach_margin=0.1)
    with pytest.raises(ValueError):
        attach_small_clusters(np.append(y, -1), x, g, attach_sim=0.0, attach_margin=0.1)


def test_new_methods_are_registered_and_check_their_graph():
    assert {"fces", "infomap-attach"} <= set(METHODS)
    x, y = split_people()
    lab = cluster(x, "infomap-attach", k=10, threshold=0.5, attach_sim=0.3, attach_margin=0.05, max_size=2)
    assert lab.shape == y.shape and lab.dtype == np.int64
    assert all(np.unique(y[lab == c]).size == 1 for c in np.unique(lab))
    with pytest.raises(ValueError):
        cluster(x, "fces", graph=build_knn(x[:-1], 5))
    with pytest.raises(ValueError):
        cluster(x, "fces", no_such_setting=1)
