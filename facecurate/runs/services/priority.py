"""Review priority of clusters: what the review queue sorts by (higher first).

The rule is the one :mod:`pipeline.uncertainty` chose by measurement on an inner split of the LFW
training half (stored with the calibrator and echoed in the run's uncertainty report); faces a person
confirmed count with p- = 0.
"""
from __future__ import annotations

import numpy as np


def preload() -> None:
    """Import the priority rule's modules now (they import torch): the web server calls this when a
    worker starts, so no review transaction pays for the import while it holds its locks."""
    import pipeline.uncertainty  # noqa: F401


def review_priority(labels: np.ndarray, p_minus: np.ndarray, features: np.ndarray | None = None,
                    config: dict | None = None) -> np.ndarray:
    """(K,) priority per cluster label 0..K-1 (0 for a label with no face)."""
    from pipeline.uncertainty import cluster_priority  # imports torch: the web server preloads it (preload)
    from pipeline.uncertainty.core import DEFAULT_PRIORITY

    cfg = {**DEFAULT_PRIORITY, **(config or {})}
    if cfg.get("merge_weight") and features is None:
        raise ValueError("the priority rule has a merge term: pass the features")
    prio = cluster_priority(np.asarray(labels, np.int64), np.asarray(p_minus, np.float64), features,
                            rule=cfg["rule"], merge_weight=cfg["merge_weight"], merge_floor=cfg.get("merge_floor", 0.0))
    return np.nan_to_num(prio, nan=0.0)


def members_priority(run, p_minus) -> float:
    """The priority of one cluster holding faces with these p- (the run's rule), for review changes."""
    p = np.asarray([np.nan if v is None else v for v in p_minus], np.float64)
    if p.size == 0:
        return 0.0
    cfg = {**((run.uncertainty_report or {}).get("priority") or {}), "merge_weight": 0.0}
    return float(review_priority(np.zeros(p.size, np.int64), p, None, cfg)[0])
