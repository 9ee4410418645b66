"""Clustering quality: pairwise and BCubed precision/recall/F, NMI, cluster counts.

Pure NumPy/SciPy, computed from the contingency matrix ``n[i, j]`` = number of samples with
true class ``i`` and predicted cluster ``j`` (sparse, so millions of samples are fine).

Conventions
- A negative predicted label means "unclustered": each such sample is its own singleton cluster.
- Pairwise precision = same-class pairs among predicted same-cluster pairs; when no pair is
  predicted together precision is 1.0 (no wrong claim was made). Recall likewise is 1.0 when the
  truth has no same-class pair. F is the harmonic mean, 0.0 when both are 0.
- NMI uses the arithmetic mean of the two entropies (scikit-learn's default); two labelings
  that are each a single cluster score 1.0.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _as_labels(labels: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer (or string) labels")
        arr = arr.astype(np.int64)
    return arr


def _codes(labels: np.ndarray, *, unclustered_singletons: bool) -> np.ndarray:
    """Dense int codes 0..K-1; negative integer labels become fresh singleton codes if asked."""
    if unclustered_singletons and labels.dtype.kind in "iu":
        labels = labels.astype(np.int64).copy()
        neg = labels < 0
        if neg.any():
            start = labels.max() + 1 if (~neg).any() else 0
            labels[neg] = start + np.arange(int(neg.sum()), dtype=np.int64)
    _, codes = np.unique(labels, return_inverse=True)
    return codes.astype(np.int64).ravel()


def contingency(true_labels: np.ndarray, pred_labels: np.ndarray) -> sp.csr_matrix:
    """Sparse (classes, clusters) contingency matrix; negative predictions are singletons."""
    t = _as_labels(true_labels, "true_labels")
    p = _as_labels(pred_labels, "pred_labels")
    if t.shape != p.shape:
        raise ValueError(f"true_labels and pred_labels differ in length: {t.shape[0]} vs {p.shape[0]}")
    tc = _codes(t, unclustered_singletons=False)
    pc = _codes(p, unclustered_singletons=True)
    data = np.ones(tc.shape[0], dtype=np.int64)
    m = sp.coo_matrix((data, (tc, pc)), shape=(tc.max() + 1, pc.max() + 1)).tocsr()
    m.sum_duplicates()
    return m


def _pairs(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return float(np.sum(x * (x - 1.0) / 2.0))


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2.0 * p * r / (p + r)


def pairwise_prf(true_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[float, float, float]:
    m = contingency(true_labels, pred_labels)
    tp = _pairs(m.data)
    pred_pairs = _pairs(np.asarray(m.sum(axis=0)).ravel())
    true_pairs = _pairs(np.asarray(m.sum(axis=1)).ravel())
    p = 1.0 if pred_pairs == 0 else tp / pred_pairs
    r = 1.0 if true_pairs == 0 else tp / true_pairs
    return p, r, _f(p, r)


def bcubed_prf(true_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[float, float, float]:
    m = contingency(true_labels, pred_labels).tocoo()
    n = float(m.data.sum())
    col = np.asarray(m.tocsr().sum(axis=0)).ravel().astype(np.float64)
    row = np.asarray(m.tocsr().sum(axis=1)).ravel().astype(np.float64)
    nij = m.data.astype(np.float64)
    p = float(np.sum(nij * nij / col[m.col]) / n)
    r = float(np.sum(nij * nij / row[m.row]) / n)
    return p, r, _f(p, r)


def nmi(true_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    m = contingency(true_labels, pred_labels).tocoo()
    n = float(m.data.sum())
    a = np.asarray(m.tocsr().sum(axis=1)).ravel().astype(np.float64)
    b = np.asarray(m.tocsr().sum(axis=0)).ravel().astype(np.float64)
    if a.size == b.size == 1:
        return 1.0
    nij = m.data.astype(np.float64)
    mi = float(np.sum(nij / n * (np.log(nij) + np.log(n) - np.log(a[m.row]) - np.log(b[m.col]))))
    h_a = float(-np.sum(a / n * np.log(a / n)))
    h_b = float(-np.sum(b / n * np.log(b / n)))
    denom = (h_a + h_b) / 2.0
    if mi <= 0 or denom <= 0:
        return 0.0
    return float(min(1.0, max(0.0, mi / denom)))


def cluster_counts(pred_labels: np.ndarray) -> dict[str, int]:
    """Number of clusters and of singleton clusters (negative labels count as singletons)."""
    codes = _codes(_as_labels(pred_labels, "pred_labels"), unclustered_singletons=True)
    sizes = np.bincount(codes)
    return {"clusters": int(sizes.size), "singletons": int(np.sum(sizes == 1))}


def evaluate_clustering(true_labels: np.ndarray, pred_labels: np.ndarray) -> dict[str, float | int]:
    """Every metric for one labeling against the truth, as a flat dict of plain Python numbers."""
    pp, pr, pf = pairwise_prf(true_labels, pred_labels)
    bp, br, bf = bcubed_prf(true_labels, pred_labels)
    true_counts = cluster_counts(_codes(_as_labels(true_labels, "true_labels"), unclustered_singletons=False))
    counts = cluster_counts(pred_labels)
    return {
        "samples": int(np.asarray(true_labels).shape[0]),
        "pairwise_precision": pp,
        "pairwise_recall": pr,
        "pairwise_f": pf,
        "bcubed_precision": bp,
        "bcubed_recall": br,
        "bcubed_f": bf,
        "nmi": nmi(true_labels, pred_labels),
        "clusters": counts["clusters"],
        "singletons": counts["singletons"],
        "true_clusters": true_counts["clusters"],
        "true_singletons": true_counts["singletons"],
    }
