"""Infomap on features whitened by its own clusters (pipeline/clustering/wccn.py)."""
import numpy as np
import pytest

from pipeline.clustering.methods import cluster
from pipeline.clustering.metrics import pairwise_prf
from pipeline.clustering.wccn import rescored, whiten, within_class_whitening


def people_with_shared_nuisance(seed: int, nuisance: float = 0.5, people: int = 30, photos: int = 8, d: int = 32):
    """Unit features: a person's direction plus a shift along 3 directions shared by everyone (what blur or
    lighting does to every face) plus a little noise."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(people, d))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    shared = rng.normal(size=(3, d))
    shared /= np.linalg.norm(shared, axis=1, keepdims=True)
    y = np.repeat(np.arange(people), photos)
    x = mu[y] + rng.normal(size=(len(y), 3)) @ shared * nuisance + rng.normal(size=(len(y), d)) * 0.35 / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whitening_by_its_own_clusters_separates_people_a_shared_nuisance_mixed(seed):
    x, y = people_with_shared_nuisance(seed)
    raw = pairwise_prf(y, cluster(x, "infomap"))
    white = pairwise_prf(y, cluster(x, "infomap-wccn"))
    assert raw[2] < 0.5  # the shared shifts put different people together
    assert white[2] > raw[2] + 0.3 and white[0] > raw[0]


def test_the_transform_shrinks_the_directions_clusters_vary_in():
    x, y = people_with_shared_nuisance(0)
    w = within_class_whitening(x, y, shrink=1.0)
    assert w.shape == (32, 32) and np.allclose(w, w.T)
    resid = lambda e: e - np.stack([e[y == c].mean(0) for c in range(30)])[y]  # noqa: E731
    spread = lambda e: np.trace(resid(e).T @ resid(e)) / np.trace(np.cov(e.T) * len(e))  # noqa: E731
    assert spread(whiten(x, w)) < 0.6 * spread(x)  # within-person share of the total scatter
    assert np.allclose(np.linalg.norm(whiten(x, w), axis=1), 1.0, atol=1e-5)


def test_no_cluster_of_two_leaves_the_features_as_they_are():
    x, _ = people_with_shared_nuisance(0)
    assert np.array_equal(within_class_whitening(x, np.arange(len(x))), np.eye(32))
    assert np.array_equal(within_class_whitening(x, np.full(len(x), -1)), np.eye(32))


def test_bad_input_is_refused():
    x, y = people_with_shared_nuisance(0)
    with pytest.raises(ValueError, match="labels"):
        within_class_whitening(x, y[:-1])
    with pytest.raises(ValueError, match="integers"):
        within_class_whitening(x, y.astype(float))
    with pytest.raises(ValueError, match="shrink"):
        within_class_whitening(x, y, shrink=0.0)
    with pytest.raises(ValueError, match="transform"):
        whiten(x, np.eye(3))
    with pytest.raises(ValueError, match="no setting"):
        cluster(x, "infomap-wccn", whiten=True)


def test_pairs_are_scored_by_their_cosine_in_chunks():
    x, _ = people_with_shared_nuisance(0)
    src, dst = np.arange(0, 100), np.arange(100, 200)
    got = rescored(x, src, dst, chunk=7)
    assert np.allclose(got, (x[src] * x[dst]).sum(1), atol=1e-6)
    with pytest.raises(ValueError, match="one length"):
        rescored(x, src, dst[:-1])


def test_a_scatter_seen_on_few_faces_leaves_the_features_as_they_are():
    """Whitening by the scatter of 3 people's 4 photos in 32 dimensions would blow up the directions none
    of them varied in: under 2 d degrees of freedom past the clusters' means there is no whitening, and
    above it the shrink is at least d / (rows - clusters)."""
    x, y = people_with_shared_nuisance(0)
    few = np.isin(y, [0, 1, 2]) & (np.arange(len(y)) % 8 < 4)  # 12 rows, 3 means: 9 degrees of freedom
    assert np.array_equal(within_class_whitening(x[few], y[few], shrink=1e-3), np.eye(32))
    some = np.isin(y, range(10))  # 80 rows, 10 means: 70 >= 64
    inv = np.linalg.inv(within_class_whitening(x[some], y[some], shrink=1e-3))
    assert np.linalg.eigvalsh(inv @ inv).min() >= 32 / 70 - 1e-6  # S + s I with s >= d / dof
    many = within_class_whitening(x, y, shrink=1e-3)  # 240 rows: directions of little spread count
    assert np.linalg.eigvalsh(np.linalg.inv(many) @ np.linalg.inv(many)).min() < 32 / 70
