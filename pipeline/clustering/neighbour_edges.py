"""Clusterers that keep people together on hard (low-resolution) faces (issue 16, item 5).

Two small, unsupervised steps on the k-nearest-neighbour graph, each a function from arrays to arrays:

- **Neighbour-based edge probabilities with early stopping** (our own small version of the idea in FC-ES,
  arXiv 2408.13431). Each face ``i`` spreads a distribution over itself and its kNN list,
  ``q_i(m) ~ exp(-(2 - 2 cos(i, m)) / tau)`` (itself at cosine 1). The probability of an edge (i, j) is the
  overlap of the two distributions, ``p_ij = sum_m min(q_i(m), q_j(m))`` in [0, 1]: two photos of one person
  see the same crowd, two people who happen to be close see different crowds. Each face then walks its
  kNN list best-first and *stops early* at the first neighbour whose edge probability is below ``min_prob``
  (or whose cosine is below ``threshold``); the edges before the stop are kept, weighted by ``p_ij``, and
  Infomap runs on them (:func:`cluster_fces`).
- **Small-cluster attachment** (:func:`attach_small_clusters`): after clustering, a cluster of at most
  ``max_size`` faces joins a larger cluster when its centroid's cosine to that cluster's centroid is at
  least ``attach_sim`` and beats the second-best candidate by ``attach_margin``. Candidates are the clusters
  of its members' kNN neighbours. :func:`cluster_infomap_attach` is Infomap followed by it.

Defaults are the settings chosen on the LFW train splits of the low-resolution dev sets, one setting for 20 and
16 px (bench/clustering_recall_hard.py, results in bench/results/clustering_recall_hard.md). There neither
beats tuned Infomap reliably on held-out sets, and on clean faces both lose to Infomap at 0.5.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.clustering.infomap_edges import infomap_on_edges
from pipeline.clustering.knn import KnnGraph, build_knn

EDGE_CHUNK = 1 << 20  # edges scored at a time (bounds the sparse row copies at scale)


def neighbour_distributions(g: KnnGraph, tau: float) -> sp.csr_matrix:
    """(N, N) rows ``q_i``: each face's kNN list plus itself, weights exp(-(2 - 2 cos) / tau), rows summing to 1."""
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau!r}")
    n, k = g.n, g.k
    cols = np.concatenate([np.arange(n, dtype=np.int64)[:, None], g.indices], axis=1)
    sims = np.concatenate([np.ones((n, 1), np.float32), g.sims], axis=1).astype(np.float64)
    ok = cols >= 0
    w = np.where(ok, np.exp(-(2.0 - 2.0 * np.where(ok, sims, 0.0)) / tau), 0.0)
    w /= w.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(n, dtype=np.int64), k + 1).reshape(n, k + 1)
    q = sp.csr_matrix((w[ok], (rows[ok], cols[ok])), shape=(n, n))
    q.sum_duplicates()  # a face listed as its own neighbour: its two weights add up
    return q


def edge_probabilities(q: sp.csr_matrix, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(E,) overlap ``sum_m min(q_src(m), q_dst(m))`` of the rows of ``q`` for each edge."""
    src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
    if src.shape != dst.shape or src.ndim != 1:
        raise ValueError(f"src and dst must be 1-d of one length, got {src.shape} and {dst.shape}")
    out = np.empty(src.size, np.float32)
    for a in range(0, src.size, EDGE_CHUNK):
        b = min(a + EDGE_CHUNK, src.size)
        out[a:b] = np.asarray(q[src[a:b]].minimum(q[dst[a:b]]).sum(axis=1)).ravel()
    return out


def early_stopped_edges(g: KnnGraph, *, tau: float, min_prob: float, threshold: float, early_stop: bool = True,
                        weight: str = "prob") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed edges (src, dst, w): each face's kNN list best-first up to the first neighbour with
    cosine < ``threshold`` or edge probability < ``min_prob`` (that one and all after it dropped; with
    ``early_stop=False`` only the failing neighbours themselves are dropped). ``w`` is the edge probability
    (``weight="prob"``) or probability x cosine (``"prob*cos"``)."""
    if weight not in ("prob", "prob*cos"):
        raise ValueError(f"weight must be 'prob' or 'prob*cos', got {weight!r}")
    n, k = g.n, g.k
    valid = (g.indices >= 0) & (g.sims >= threshold)
    src = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], (n, k))[valid]
    prob = np.zeros((n, k), np.float32)
    prob[valid] = edge_probabilities(neighbour_distributions(g, tau), src, g.indices[valid])
    keep = valid & (prob >= min_prob)
    if early_stop:
        keep = np.cumprod(keep, axis=1).astype(bool)  # stops at the first failure
    src = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], (n, k))[keep]
    w = prob[keep] if weight == "prob" else prob[keep] * np.maximum(g.sims[keep], 0.0)
    return src, g.indices[keep], w


def _graph(emb: np.ndarray, k: int, graph: KnnGraph | None, index: str, cache_dir, progress) -> KnnGraph:
    n = emb.shape[0]
    if graph is not None:
        if graph.n != n:
            raise ValueError(f"kNN graph has {graph.n} rows, embeddings have {n}")
        return graph
    return build_knn(emb, max(1, min(k, n - 1)), index, cache_dir, progress=progress)


def _singletons(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels, np.int64).copy()
    none = labels < 0  # faces with no edge: a singleton label each
    labels[none] = labels.max(initial=-1) + 1 + np.arange(int(none.sum()))
    return labels


def _centroids(labels: np.ndarray, emb: np.ndarray) -> np.ndarray:
    cent = np.zeros((int(labels.max()) + 1, emb.shape[1]), np.float64)
    np.add.at(cent, labels, emb)
    return cent / np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)


def attach_small_clusters(labels: np.ndarray, emb: np.ndarray, g: KnnGraph, *, attach_sim: float,
                          attach_margin: float, max_size: int = 2) -> np.ndarray:
    """Labels where each cluster of at most ``max_size`` faces joins, as a whole, the larger cluster (among
    its members' kNN neighbours') whose centroid is closest to its own, if that cosine is >= ``attach_sim``
    and beats the second-best candidate by >= ``attach_margin``. Larger clusters never change."""
    labels = np.asarray(labels, np.int64)
    emb = np.asarray(emb, np.float64)
    if labels.ndim != 1 or emb.ndim != 2 or labels.shape[0] != emb.shape[0] or g.n != emb.shape[0]:
        raise ValueError(f"labels {labels.shape}, embeddings {emb.shape}, graph of {g.n}: sizes differ")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative (give unclustered faces a singleton label each)")
    sizes = np.bincount(labels)
    out = labels.copy()
    c, d = _candidate_pairs(labels, g, sizes, max_size)
    if c.size == 0:
        return out
    cent = _centroids(labels, emb)
    sims = np.einsum("ij,ij->i", cent[c], cent[d])
    order = np.lexsort((-sims, c))  # by small cluster, best candidate first
    c, d, sims = c[order], d[order], sims[order]
    first = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    has_second = np.r_[first[1:], c.size] - first > 1
    second = np.where(has_second, sims[np.minimum(first + 1, c.size - 1)], -1.0)
    ok = (sims[first] >= attach_sim) & (sims[first] - second >= attach_margin)
    target = np.arange(sizes.size)
    target[c[first[ok]]] = d[first[ok]]
    return target[labels]


def _candidate_pairs(labels: np.ndarray, g: KnnGraph, sizes: np.ndarray, max_size: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Unique (small cluster, larger cluster) pairs linked by a kNN edge from a face of the small one."""
    faces = np.flatnonzero(sizes[labels] <= max_size)
    nb = g.indices[faces]
    src = np.broadcast_to(labels[faces][:, None], nb.shape)[nb >= 0]
    dst = labels[nb[nb >= 0]]
    keep = sizes[dst] > max_size
    pairs = np.unique(np.stack([src[keep], dst[keep]], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def cluster_fces(emb, *, threshold: float = 0.45, tau: float = 0.5, min_prob: float = 0.15, early_stop: bool = True,
                 weight: str = "prob*cos", attach_sim: float | None = None, attach_margin: float = 0.05,
                 max_size: int = 2, k: int = 30, num_trials: int = 1, seed: int = 1, graph=None, index="auto",
                 cache_dir=None, progress=None):
    """Infomap on early-stopped neighbour-probability edges (see the module docstring), then, unless
    ``attach_sim`` is None, :func:`attach_small_clusters`."""
    g = _graph(emb, k, graph, index, cache_dir, progress)
    src, dst, p = early_stopped_edges(g, tau=tau, min_prob=min_prob, threshold=threshold, early_stop=early_stop,
                                      weight=weight)
    labels = _singletons(infomap_on_edges(g.n, src, dst, p, num_trials=num_trials, seed=seed, progress=progress))
    if attach_sim is None:
        return labels
    return attach_small_clusters(labels, emb, g, attach_sim=attach_sim, attach_margin=attach_margin,
                                 max_size=max_size)


def cluster_infomap_attach(emb, *, threshold: float = 0.5, attach_sim: float = 0.0, attach_margin: float = 0.05,
                           max_size: int = 2, k: int = 30, num_trials: int = 1, seed: int = 1, graph=None,
                           index="auto", cache_dir=None, progress=None):
    """Infomap at cosine floor ``threshold``, then :func:`attach_small_clusters`."""
    g = _graph(emb, k, graph, index, cache_dir, progress)
    src, dst, w = g.edges(threshold)
    labels = _singletons(infomap_on_edges(g.n, src, dst, w, num_trials=num_trials, seed=seed, progress=progress))
    return attach_small_clusters(labels, emb, g, attach_sim=attach_sim, attach_margin=attach_margin,
                                 max_size=max_size)
