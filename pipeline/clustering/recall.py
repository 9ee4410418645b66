"""Recall fixes for Infomap on the kNN graph (issue 16, item 5): people split into several clusters.

Two cheap, unsupervised steps from recent face-clustering work, each usable alone:

- **Shared-neighbour edge weights** (in the spirit of FC-ES, arXiv 2408.13431, which weights an edge by
  how much the two faces' neighbourhoods agree): an edge (i, j) of cosine ``s`` gets weight
  ``s * (c_ij / k) ** power`` where ``c_ij`` counts the faces in both kNN lists (themselves included).
  Edges inside one person share many neighbours; a stray edge between two people shares few. With that,
  the similarity floor can go lower (more edges, more recall) without merging people.
- **Singleton attachment** (after clustering): a face left alone joins the cluster its neighbours belong
  to when its cosine to that cluster's centroid is at least ``attach_sim`` and beats the runner-up
  cluster by ``attach_margin``.

``cluster_infomap_recall`` combines them (either can be switched off); its defaults are the best-F
setting on the LFW training half (bench/clustering_recall.py): no reweighting (power 0: it cost recall
there), attachment at cosine 0.5 with margin 0.1. It trades a little precision for recall, so it is not
the default method (bench/results/clustering_recall.md).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.clustering.infomap_edges import infomap_on_edges
from pipeline.clustering.knn import KnnGraph, build_knn


def shared_neighbours(g: KnnGraph, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(E,) number of faces in both kNN lists of each edge (i, j), each list counting its own face."""
    n, k = g.n, g.k
    rows = np.repeat(np.arange(n, dtype=np.int64), k + 1)
    cols = np.concatenate([np.arange(n, dtype=np.int64)[:, None], g.indices], axis=1).ravel()
    ok = cols >= 0
    a = sp.csr_matrix((np.ones(int(ok.sum()), np.float32), (rows[ok], cols[ok])), shape=(n, n))
    a.data[:] = 1.0  # duplicates (self listed as a neighbour) count once
    # c_ij = <a_i, a_j>, only at the edges asked for
    out = np.asarray(a[src].multiply(a[dst]).sum(axis=1)).ravel()
    return out.astype(np.float32)


def reweight_edges(g: KnnGraph, threshold: float, power: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges with cosine >= threshold, weight cosine * (shared neighbours / (k + 1)) ** power."""
    src, dst, w = g.edges(threshold)
    if power == 0 or src.size == 0:
        return src, dst, w
    c = shared_neighbours(g, src, dst)
    return src, dst, (w * (c / (g.k + 1)) ** power).astype(np.float32)


def attach_singletons(labels: np.ndarray, emb: np.ndarray, g: KnnGraph, *, attach_sim: float,
                      attach_margin: float, max_size: int = 1) -> np.ndarray:
    """Labels where each face of a cluster of at most ``max_size`` faces joins the best cluster among its
    kNN neighbours' (by centroid cosine) if that is >= ``attach_sim`` and beats the next by ``attach_margin``."""
    labels = np.asarray(labels, np.int64)
    if labels.shape != (emb.shape[0],) or g.n != emb.shape[0]:
        raise ValueError(f"labels {labels.shape}, embeddings {emb.shape}, graph of {g.n}: sizes differ")
    sizes = np.bincount(labels)
    small = np.flatnonzero(sizes[labels] <= max_size)
    if small.size == 0:
        return labels.copy()
    cent = np.zeros((sizes.size, emb.shape[1]), np.float64)
    np.add.at(cent, labels, emb)
    norm = np.linalg.norm(cent, axis=1, keepdims=True)
    cent = cent / np.maximum(norm, 1e-12)
    out = labels.copy()
    for i in small:
        nb = g.indices[i]
        cand = np.unique(labels[nb[nb >= 0]])
        cand = cand[(cand != labels[i]) & (sizes[cand] > max_size)]
        if cand.size == 0:
            continue
        sims = cent[cand] @ emb[i]
        order = np.argsort(-sims)
        best = sims[order[0]]
        second = sims[order[1]] if cand.size > 1 else -1.0
        if best >= attach_sim and best - second >= attach_margin:
            out[i] = cand[order[0]]
    return out


def cluster_infomap_recall(
    emb,
    *,
    threshold: float = 0.5,
    power: float = 0.0,
    attach_sim: float | None = 0.5,
    attach_margin: float = 0.1,
    k: int = 30,
    num_trials: int = 1,
    seed: int = 1,
    graph=None,
    index="auto",
    cache_dir=None,
    progress=None,
):
    """Infomap on shared-neighbour weighted kNN edges, then singleton attachment (``attach_sim=None``: off)."""
    n = emb.shape[0]
    if graph is not None and graph.n != n:
        raise ValueError(f"kNN graph has {graph.n} rows, embeddings have {n}")
    g = graph if graph is not None else build_knn(emb, max(1, min(k, n - 1)), index, cache_dir, progress=progress)
    src, dst, w = reweight_edges(g, threshold, power)
    labels = infomap_on_edges(g.n, src, dst, w, num_trials=num_trials, seed=seed, progress=progress)
    none = labels < 0  # faces with no edge: a singleton label each
    labels[none] = labels.max(initial=-1) + 1 + np.arange(int(none.sum()))
    if attach_sim is not None:
        labels = attach_singletons(labels, np.asarray(emb, np.float64), g, attach_sim=attach_sim,
                                   attach_margin=attach_margin)
    return labels
