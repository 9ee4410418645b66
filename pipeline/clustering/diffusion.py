"""Density-peak clustering on diffused densities and transition-probability similarities (issue 16, item 5).

Our small version of the idea in arXiv 2207.11895 ("On Mitigating Hard Clusters for Face Clustering": NDDe and
TPDi with standard density-peak clustering), on the k-nearest-neighbour graph:

- **Transition-probability similarity**: each face's distribution over itself and its kNN list,
  ``q_i(m) ~ exp(-(2 - 2 cos(i, m)) / tau)``; the similarity of two faces is the overlap of their
  distributions, ``sum_m min(q_i(m), q_j(m))`` (:func:`pipeline.clustering.neighbour_edges.edge_probabilities`).
- **Diffused density**: a face's own density is the mean similarity to its kNN list; it is then smoothed
  over the graph, ``rho <- (1 - alpha) rho0 + alpha Q rho`` (``Q`` the row-stochastic distributions without
  self), so a sparse person's faces borrow density from each other instead of looking like a border.
- **Density peaks**: every face links to its most similar kNN neighbour of higher density when that
  similarity is >= ``link_sim`` (and its cosine >= ``threshold``); faces with no such neighbour are peaks,
  and each tree of links is a cluster. One uniform threshold, no Infomap.

Defaults: chosen on the low-resolution LFW train splits (bench/results/clustering_recall_hard.md), where it loses
to tuned Infomap by about 0.1 F on every set: it fragments people (one parent per face).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from pipeline.clustering.knn import KnnGraph
from pipeline.clustering.neighbour_edges import _graph, edge_probabilities, neighbour_distributions

DIFFUSION_STEPS = 20


def knn_similarities(g: KnnGraph, tau: float) -> np.ndarray:
    """(N, k) transition-probability similarity of each face to each of its kNN neighbours (0 where missing)."""
    valid = g.indices >= 0
    src = np.broadcast_to(np.arange(g.n, dtype=np.int64)[:, None], g.indices.shape)[valid]
    out = np.zeros(g.indices.shape, np.float64)
    out[valid] = edge_probabilities(neighbour_distributions(g, tau), src, g.indices[valid])
    return out


def diffused_density(g: KnnGraph, sim: np.ndarray, *, tau: float, alpha: float, steps: int = DIFFUSION_STEPS
                     ) -> np.ndarray:
    """(N,) density: mean similarity to the kNN list, smoothed ``steps`` times over the graph with weight ``alpha``."""
    if sim.shape != g.indices.shape:
        raise ValueError(f"similarities {sim.shape} do not match the kNN graph {g.indices.shape}")
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")
    rho0 = sim.sum(axis=1) / np.maximum((g.indices >= 0).sum(axis=1), 1)
    valid = g.indices >= 0
    w = np.where(valid, np.exp(-(2.0 - 2.0 * np.where(valid, g.sims, 0.0)) / tau), 0.0)
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    rows = np.broadcast_to(np.arange(g.n)[:, None], g.indices.shape)[valid]
    q = sp.csr_matrix((w[valid], (rows, g.indices[valid])), shape=(g.n, g.n))
    rho = rho0.copy()
    for _ in range(steps):
        rho = (1.0 - alpha) * rho0 + alpha * (q @ rho)
    return rho


def density_peak_links(g: KnnGraph, sim: np.ndarray, rho: np.ndarray, *, link_sim: float, threshold: float
                       ) -> np.ndarray:
    """(N,) parent of each face: its most similar kNN neighbour of higher density (ties broken by index) when
    that similarity is >= ``link_sim`` and the cosine >= ``threshold``; -1 for a peak."""
    nb = g.indices
    valid = nb >= 0
    nb_rho = np.where(valid, rho[np.where(valid, nb, 0)], -np.inf)
    own = rho[:, None]
    higher = valid & ((nb_rho > own) | ((nb_rho == own) & (nb < np.arange(g.n)[:, None])))
    score = np.where(higher, sim, -np.inf)
    best = score.argmax(axis=1)
    rows = np.arange(g.n)
    ok = (score[rows, best] >= link_sim) & (g.sims[rows, best] >= threshold)
    return np.where(ok, nb[rows, best], -1)


def cluster_density_peak(emb, *, tau: float = 0.3, alpha: float = 0.0, link_sim: float = 0.0, threshold: float = 0.5,
                         k: int = 30, graph=None, index="auto", cache_dir=None, progress=None):
    """Density-peak clustering with diffused density and transition-probability similarity (module docstring)."""
    g = _graph(emb, k, graph, index, cache_dir, progress)
    sim = knn_similarities(g, tau)
    rho = diffused_density(g, sim, tau=tau, alpha=alpha)
    parent = density_peak_links(g, sim, rho, link_sim=link_sim, threshold=threshold)
    child = np.flatnonzero(parent >= 0)
    adj = sp.csr_matrix((np.ones(child.size), (child, parent[child])), shape=(g.n, g.n))
    return connected_components(adj, directed=True, connection="weak")[1].astype(np.int64)
