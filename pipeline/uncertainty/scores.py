"""Measuring p- and using it: average precision, calibration tables, the simple baseline scores p- must beat, and
the per-cluster review priority (what the review queue sorts by). Pure NumPy.
"""
from __future__ import annotations

import numpy as np

#: Bin edges of the calibration table (predicted p-).
CALIBRATION_BINS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: rules of :func:`cluster_priority`
PRIORITY_RULES = ("any_wrong", "expected_wrong", "max", "mean")


def _finite_pair(scores, positives):
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positives, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores and positives must be aligned 1-D arrays, got {s.shape} and {y.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values (drop unclustered faces first)")
    return s, y


def precision_recall(scores, positives) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score threshold (descending), as sklearn's precision_recall_curve
    without the end point. Returns ``(precision, recall, thresholds)``."""
    s, y = _finite_pair(scores, positives)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each run of equal scores
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1) - tps
    npos = max(int(y.sum()), 1)
    return tps / (tps + fps), tps / npos, s[last]


def average_precision(scores, positives) -> float:
    """Average precision of ``scores`` (higher = more likely positive) at finding ``positives``; equals
    sklearn.metrics.average_precision_score (ties handled as one threshold). NaN when there is no positive."""
    s, y = _finite_pair(scores, positives)
    if not y.any():
        return float("nan")
    prec, rec, _ = precision_recall(s, y)
    return float(np.sum(np.diff(np.r_[0.0, rec]) * prec))


def ap_report(scores, positives) -> dict:
    """``{"ap", "base_rate", "positives", "n"}``: the base rate is the AP of a random score."""
    s, y = _finite_pair(scores, positives)
    return {"ap": average_precision(s, y), "base_rate": float(y.mean()) if y.size else float("nan"),
            "positives": int(y.sum()), "n": int(y.size)}


def calibration_table(p, wrong, bins=CALIBRATION_BINS, *, min_count: int = 30) -> dict:
    """Reliability table of predicted probabilities ``p`` against observed outcomes ``wrong``.

    Returns ``{"bins": [{"lo", "hi", "count", "mean_predicted", "observed", "deviation", "stderr"}...],
    "max_deviation", "ece", "min_count"}``. Bins are ``[lo, hi)`` (the last one closed). ``max_deviation`` is the
    largest ``|mean_predicted - observed|`` over bins with at least ``min_count`` faces (smaller bins are listed but
    too noisy to judge); ``ece`` is the count-weighted mean deviation over all bins. ``stderr`` is the binomial
    standard error of the observed rate at the predicted rate.
    """
    pp, y = _finite_pair(p, wrong)
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("bins must be increasing edges")
    idx = np.clip(np.searchsorted(edges, pp, side="right") - 1, 0, edges.size - 2)
    rows, dev_big, ece = [], [], 0.0
    for b in range(edges.size - 1):
        m = idx == b
        c = int(m.sum())
        if c == 0:
            continue
        mp, obs = float(pp[m].mean()), float(y[m].mean())
        dev = abs(mp - obs)
        rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": c, "mean_predicted": mp,
                     "observed": obs, "deviation": dev, "stderr": float(np.sqrt(max(mp * (1 - mp), 1e-12) / c))})
        ece += c * dev
        if c >= min_count:
            dev_big.append(dev)
    return {"bins": rows, "max_deviation": float(max(dev_big)) if dev_big else float("nan"),
            "ece": ece / max(pp.size, 1), "min_count": int(min_count)}


def baseline_scores(geometry: dict[str, np.ndarray], top2_margin=None, *, singleton_loo: float = 1.0) -> dict:
    """The simple per-face scores p- must beat (higher = more suspect), from :func:`cluster_geometry`:

    - ``small_cluster``: ``-size`` (faces of small clusters first; split pieces are small);
    - ``loo_distance``: ``1 - loo_cos`` (cosine distance to the leave-one-out centroid; a singleton has no
      cluster mates and gets ``singleton_loo``);
    - ``top2_margin``: ``-margin`` (the softmax's top-1 minus top-2 probability; low = suspect), if given.
    """
    out = {"small_cluster": -geometry["size"],
           "loo_distance": np.where(geometry["size"] == 1, singleton_loo, 1.0 - geometry["loo_cos"])}
    if top2_margin is not None:
        out["top2_margin"] = -np.asarray(top2_margin, dtype=np.float64)
    return out


def nearest_cluster_similarity(features, cluster_labels, *, block: int = 4096) -> np.ndarray:
    """(C,) largest cosine between each cluster's normalised centroid and any other cluster's (labels 0..C-1 by
    value; NaN for labels with no face, or when there is one cluster)."""
    x = np.asarray(features, dtype=np.float64)
    lab = np.asarray(cluster_labels).astype(np.int64)
    keep = lab >= 0
    c = int(lab[keep].max()) + 1 if keep.any() else 0
    out = np.full(c, np.nan)
    sums = np.zeros((c, x.shape[1]))
    np.add.at(sums, lab[keep], x[keep])
    present = np.flatnonzero(np.bincount(lab[keep], minlength=c) > 0)
    if present.size < 2:
        return out
    cent = sums[present]
    cent = (cent / np.linalg.norm(cent, axis=1, keepdims=True)).astype(np.float32)
    for i in range(0, present.size, block):
        s = cent[i : i + block] @ cent.T
        s[np.arange(s.shape[0]), np.arange(i, i + s.shape[0])] = -np.inf
        out[present[i : i + block]] = s.max(1)
    return out


def cluster_priority(cluster_labels, p_minus, features=None, *, rule: str = "any_wrong",
                     merge_weight: float = 0.0, merge_floor: float = 0.0) -> np.ndarray:
    """Per-cluster review priority (higher = review first), shape ``(C,)`` with ``C = max(cluster_labels) + 1``
    (index = cluster label; NaN for labels that have no face). Faces with a negative label are ignored.

    ``rule`` combines the faces' p- within a cluster:

    - ``any_wrong``: ``1 - prod(1 - p-)``, the probability that the cluster holds at least one wrongly clustered face
      if the faces' errors were independent;
    - ``expected_wrong``: ``sum(p-)``, the expected number of wrongly clustered faces;
    - ``max``: the largest p-; ``mean``: the mean p-.

    ``merge_weight`` > 0 adds ``merge_weight * max(0, s - merge_floor)`` with ``s`` the cosine between the cluster's
    centroid and the nearest other cluster's (a candidate merge); it needs ``features``. The rule and the merge
    weight the product uses are chosen by measurement (bench/uncertainty.py, inner split of the LFW training half);
    see ``PRIORITY`` in :mod:`pipeline.uncertainty.core`. Faces with NaN p- count as 0.
    """
    lab = np.asarray(cluster_labels)
    p = np.asarray(p_minus, dtype=np.float64)
    if lab.ndim != 1 or p.shape != lab.shape or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError("cluster_labels must be a 1-D integer array and p_minus must have the same shape")
    if rule not in PRIORITY_RULES:
        raise ValueError(f"rule must be one of {PRIORITY_RULES}, got {rule!r}")
    keep = lab >= 0
    c = int(lab[keep].max()) + 1 if keep.any() else 0
    lk = lab[keep].astype(np.int64)
    pk = np.clip(np.nan_to_num(p[keep], nan=0.0), 0.0, 1.0)
    count = np.bincount(lk, minlength=c).astype(np.float64)
    if rule == "any_wrong":
        out = -np.expm1(np.bincount(lk, weights=np.log1p(-np.minimum(pk, 1 - 1e-12)), minlength=c))
    elif rule == "expected_wrong":
        out = np.bincount(lk, weights=pk, minlength=c)
    elif rule == "max":
        out = np.zeros(c)
        np.maximum.at(out, lk, pk)
    else:
        out = np.bincount(lk, weights=pk, minlength=c) / np.maximum(count, 1)
    if merge_weight:
        if features is None:
            raise ValueError("merge_weight needs features")
        s = nearest_cluster_similarity(features, lab)
        out = out + merge_weight * np.maximum(0.0, np.nan_to_num(s, nan=-1.0) - merge_floor)
    out[count == 0] = np.nan
    return out


def cluster_truth(cluster_labels, wrong) -> np.ndarray:
    """(C,) bool ground truth for review priority: the cluster holds at least one wrongly clustered face
    (labels 0..C-1 by value)."""
    lab = np.asarray(cluster_labels).astype(np.int64)
    keep = lab >= 0
    c = int(lab[keep].max()) + 1 if keep.any() else 0
    return np.bincount(lab[keep], weights=np.asarray(wrong, bool)[keep].astype(float), minlength=c) > 0
