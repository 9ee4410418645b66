"""Review priority of clusters: what the review queue sorts by (higher first)."""
from __future__ import annotations

import numpy as np


def review_priority(labels: np.ndarray, p_minus: np.ndarray) -> np.ndarray:
    """(K,) priority per cluster label 0..K-1: the expected number of wrongly clustered faces in the
    cluster (sum of p-; NaN counts as 0), so a big doubtful cluster comes before a small one."""
    labels = np.asarray(labels)
    p = np.nan_to_num(np.asarray(p_minus, np.float64), nan=0.0)
    if labels.shape != p.shape:
        raise ValueError(f"labels {labels.shape} and p_minus {p.shape} must have the same shape")
    k = int(labels.max()) + 1 if labels.size else 0
    keep = labels >= 0
    return np.bincount(labels[keep], weights=p[keep], minlength=k)
