"""infomap_on_edges builds the network through infomap's bulk path: the modules must be those of the
per-link add_edge_index path it replaced (same nodes, same order, same seed)."""
import warnings

import numpy as np

from pipeline.clustering.infomap_edges import infomap_on_edges


def _reference(n, src, dst, w):
    from infomap import Infomap

    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    _, first = np.unique(lo * n + hi, return_index=True)
    im = Infomap(two_level=True, silent=True, num_trials=1, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        im.add_edge_index(np.vstack([lo[first], hi[first]]), edge_weight=w[first].astype(np.float64),
                          num_nodes=n, directed=False)
        im.run()
        mods = im.get_modules(depth_level=1)
    labels = np.full(n, -1, np.int64)
    labels[np.fromiter(mods.keys(), np.int64)] = np.fromiter(mods.values(), np.int64)
    return labels


def test_same_modules_as_the_per_link_path():
    rng = np.random.default_rng(3)
    n, groups = 600, 40
    truth = rng.integers(0, groups, n)
    src = rng.integers(0, n, 6000)
    dst = np.where(rng.random(6000) < 0.8, rng.permutation(n)[src % n], rng.integers(0, n, 6000))
    same = truth[src] == truth[dst]
    dst = np.where(same | (rng.random(6000) < 0.1), dst, src)  # mostly within-group links
    keep = src != dst
    src, dst = src[keep], dst[keep]
    w = rng.uniform(0.5, 1.0, src.size).astype(np.float32)
    got = infomap_on_edges(n, src, dst, w)
    want = _reference(n, src, dst, w)
    assert np.array_equal(got, want)
    assert len(np.unique(got)) > 5  # a partition, not one module


def test_no_edges_leaves_every_node_unlabelled():
    e = np.zeros(0, np.int64)
    assert (infomap_on_edges(5, e, e, np.zeros(0, np.float32)) == -1).all()
