"""Infomap twice, the second time on features whitened by the first pass's own clusters (issue 16, item 5).

Within-class covariance normalisation (WCCN, from speaker verification) without labels: the first Infomap
pass gives clusters that are mostly one person each; the scatter of faces around their cluster's mean
(clusters of at least ``min_size`` faces) estimates the directions in which one person's photos vary in
*this* set: at low resolution, blur and lighting move every person's features the same way. Dividing
those directions down (``x -> S^-1/2 x``, ``S`` the within-cluster covariance scaled to unit mean
eigenvalue plus ``shrink`` times the identity, rows normalised again) makes two photos of one person more
alike than two people; Infomap then runs on the whitened features with the same graph settings.

The transform is a (d, d) matrix fitted on the run's own faces: nothing is learned from labels. The second
pass scores the first pass's kNN pairs again in the whitened space (no second search), so its cost is a
second Infomap pass. Measured in bench/results/clustering_wccn.md: better on every low-resolution and glint
held-out set, worse precision on clean all-LFW, so ``infomap-wccn`` is not the default clusterer. The review
queue takes its similarities on faces whitened the same way (facecurate/runs/services/merge_queue.py), where a
wrong suggestion costs one "no", not a wrong label.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.clustering.infomap_edges import infomap_on_edges
from pipeline.clustering.knn import build_knn
from pipeline.features import check_embeddings


MIN_DOF_PER_DIM = 2  # below 2 d residual degrees of freedom (256 faces past their clusters' means at d 128), no whitening


def within_class_whitening(emb: np.ndarray, labels: np.ndarray, shrink: float = 1.0, min_size: int = 2) -> np.ndarray:
    """The (d, d) symmetric matrix ``(S + s I)^-1/2``, ``S`` the covariance of the rows of ``emb`` about
    their cluster's mean over clusters (``labels`` >= 0) of at least ``min_size`` rows, scaled to trace d,
    and ``s`` the larger of ``shrink`` and d / (rows - clusters). The identity when the clusters hold fewer
    than :data:`MIN_DOF_PER_DIM` x d such degrees of freedom: a scatter seen on few faces blows up the
    directions none of them varied in, and a face not among them (a rejected one) lands far from its own
    cluster (a 48-face run in a browser test: a rejected face's own cluster came last of 6). On the dev
    sets, 900 to 2,300 degrees of freedom in 128 dimensions, the floor on ``s`` is 0.06 to 0.14."""
    emb = np.asarray(emb)
    labels = np.asarray(labels)
    if emb.ndim != 2 or labels.shape != (emb.shape[0],):
        raise ValueError(f"embeddings (N, d) and labels (N,) needed, got {emb.shape} and {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if not shrink > 0 or min_size < 2:
        raise ValueError(f"shrink must be > 0 and min_size >= 2, got {shrink!r} and {min_size!r}")
    d = emb.shape[1]
    ok = labels >= 0
    counts = np.bincount(labels[ok]) if ok.any() else np.zeros(0, np.int64)
    rows = np.flatnonzero(ok & (counts[np.where(ok, labels, 0)] >= min_size)) if len(counts) else np.zeros(0, np.int64)
    if not len(rows):
        return np.eye(d)
    x = np.asarray(emb[rows], np.float32)  # float32 products: O(N d^2) at 1M faces is a BLAS call, not minutes
    member = sp.csr_matrix((np.ones(len(rows), np.float32), (labels[rows], np.arange(len(rows)))),
                           shape=(len(counts), len(rows)))
    means = np.asarray(member @ x) / np.maximum(counts, 1)[:, None].astype(np.float32)
    resid = x - means[labels[rows]]
    scatter = (resid.T @ resid).astype(np.float64) / len(rows)
    trace = np.trace(scatter)
    if trace <= 0:  # every kept cluster is one point repeated
        return np.eye(d)
    dof = len(rows) - int(np.sum(counts >= min_size))  # rows less the means estimated from them
    if dof < MIN_DOF_PER_DIM * d:  # too few faces to see how a person varies in every direction
        return np.eye(d)
    shrink = max(shrink, d / dof)  # the fewer the faces, the less directions of little spread are blown up
    values, vectors = np.linalg.eigh(scatter * (d / trace) + shrink * np.eye(d))
    return (vectors * values ** -0.5) @ vectors.T


def whiten(emb: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Rows of ``emb`` times ``transform``, L2-normalised again (float32)."""
    if transform.shape != (emb.shape[1], emb.shape[1]):
        raise ValueError(f"transform must be ({emb.shape[1]}, {emb.shape[1]}), got {transform.shape}")
    out = np.asarray(emb, np.float32) @ transform.astype(np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def rescored(white: np.ndarray, src: np.ndarray, dst: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """Cosine of each pair (src[i], dst[i]) of rows of ``white``, in chunks of ``chunk`` pairs (float32)."""
    if src.shape != dst.shape or src.ndim != 1:
        raise ValueError(f"src and dst must be 1-d of one length, got {src.shape} and {dst.shape}")
    out = np.empty(len(src), np.float32)
    for a in range(0, len(src), chunk):
        out[a:a + chunk] = np.einsum("ij,ij->i", white[src[a:a + chunk]], white[dst[a:a + chunk]])
    return out


def cluster_infomap_wccn(emb, *, threshold: float = 0.5, shrink: float = 1.0, k: int = 30, num_trials: int = 1,
                         seed: int = 1, graph=None, index="auto", cache_dir=None, progress=None):
    """Infomap at cosine floor ``threshold`` on the kNN graph, then Infomap again on the same graph's
    neighbour pairs scored by their cosine in the features whitened by the first pass's clusters
    (:func:`within_class_whitening`), the same floor. The second pass reads the first's neighbour lists
    instead of searching the whitened features again: on the LFW training identities at 20 and 16 px it
    clustered as well as a new search or better, and it costs no second kNN search (at 1M faces most of
    the clustering's time); pairs whose raw cosine was below 0.4 never reached 0.5 after whitening there.
    Where ``auto`` builds the strong-edge graph (over 20,000 faces), weaker pairs are those its search met."""
    emb = check_embeddings(emb)
    if graph is None:
        graph = build_knn(emb, max(1, min(k, emb.shape[0] - 1)), index, cache_dir, progress=progress,
                          min_sim=threshold)
    elif graph.n != emb.shape[0]:
        raise ValueError(f"kNN graph has {graph.n} rows, embeddings have {emb.shape[0]}")
    src, dst, w = graph.edges(threshold)
    first = infomap_on_edges(graph.n, src, dst, w, num_trials=num_trials, seed=seed, progress=progress)
    white = whiten(emb, within_class_whitening(emb, first, shrink))
    src, dst, _ = graph.edges()
    w = rescored(white, src, dst)
    keep = w >= threshold
    return infomap_on_edges(graph.n, src[keep], dst[keep], w[keep], num_trials=num_trials, seed=seed,
                            progress=progress)
