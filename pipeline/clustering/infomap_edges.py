"""Two-level Infomap (the map equation) on a list of weighted undirected edges: the core that
``infomap`` and ``infomap-recall`` (pipeline.clustering.methods / recall) share."""
from __future__ import annotations

import warnings

import numpy as np


def infomap_on_edges(n: int, src: np.ndarray, dst: np.ndarray, w: np.ndarray, *, num_trials: int = 1, seed: int = 1,
                     progress=None) -> np.ndarray:
    """Two-level Infomap on undirected weighted edges (one link per pair); (n,) labels, -1 for no edge."""
    from infomap import Infomap

    if not (src.shape == dst.shape == w.shape and src.ndim == 1):
        raise ValueError(f"src, dst, w must be 1-d of one length, got {src.shape}, {dst.shape}, {w.shape}")
    # undirected: one link per pair (i, j), i < j, whichever side listed it
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    key, first = np.unique(lo * n + hi, return_index=True)
    pair_small, pair_large, pw = lo[first], hi[first], w[first]
    labels = np.full(n, -1, np.int64)
    if pair_small.size == 0:
        return labels
    im = Infomap(two_level=True, silent=True, num_trials=num_trials, seed=seed)
    # every node first, in id order, then the links in one call through infomap's C++ bulk path: the same
    # network, node order and so the same modules as add_edge_index(num_nodes=n), which loops over links in
    # Python (1.8 of 2.7 s at 100k synthetic faces; bench/results/labels_scale.md)
    for node in range(n):
        im.add_node(node)
    im.add_links(np.column_stack([pair_small.astype(np.float64), pair_large.astype(np.float64),
                                  np.maximum(pw, 1e-6).astype(np.float64)]))
    if progress:
        progress(0, 1, stage="infomap")
    im.run()
    # im.run().modules() (the non-deprecated form) segfaults here when faiss is loaded too (the two
    # SWIG modules' iterators clash, infomap 2.16 + faiss 1.15); get_modules() is safe
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        mods = im.get_modules(depth_level=1)
    nodes = np.fromiter(mods.keys(), dtype=np.int64, count=len(mods))
    vals = np.fromiter(mods.values(), dtype=np.int64, count=len(mods))
    labels[nodes] = vals
    if progress:
        progress(1, 1, stage="infomap")
    return labels
