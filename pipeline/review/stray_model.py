"""P(a face is a stray in its cluster | its p-, the cluster's size): p- recalibrated for the review queue.

p- (extreme value theory on each face's margin, :mod:`pipeline.uncertainty`) orders faces well but its
values are not the share of faces that are wrong: on the LFW training identities at 16 px, faces at
p- 0.75-1 were strays 19 % of the time and faces at 0.05-0.1 8 % (bench/merge_queue.py prints the
table). The queue weighs a clean-up against a merge by the pairs each is expected to fix, so an
overstated p- sends the person to confirm clean clusters. This is a logistic map from (logit p-,
log size) to "not of the cluster's majority person", fitted on training identities only
(``stray_model.json``, written by ``bench/merge_queue.py fit``). The p- a run stores is left as it is:
retraining weighs faces by it as the paper does.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from .logistic import newton_fit, sigmoid

MODEL_PATH = Path(__file__).with_name("stray_model.json")
EPS = 1e-4


def features(p_minus, size) -> np.ndarray:
    """(N, 2): logit of p- (clipped to [EPS, 1 - EPS]) and log of the cluster's size."""
    p = np.clip(np.nan_to_num(np.asarray(p_minus, np.float64), nan=0.0), EPS, 1 - EPS)
    n = np.broadcast_to(np.asarray(size, np.float64), p.shape)
    if p.ndim != 1 or (n < 1).any():
        raise ValueError(f"p- (N,) and sizes >= 1 needed, got {p.shape} and min size {n.min() if n.size else None}")
    return np.stack([np.log(p / (1 - p)), np.log(n)], 1)


def fit(p_minus, size, stray, l2: float = 1e-3) -> dict:
    """Fit on faces of clusters with at least two faces (a singleton is nobody's stray)."""
    y = np.asarray(stray, np.float64)
    x = features(p_minus, size)
    if y.shape != (len(x),):
        raise ValueError(f"labels ({len(x)},) needed, got {y.shape}")
    return {"features": ["logit_p_minus", "log_size"], "coef": newton_fit(x, y, l2).tolist(), "l2": l2}


def predict(model: dict, p_minus, size) -> np.ndarray:
    """P(stray) per face; a face with p- 0 (a person put it there) or alone in its cluster is 0."""
    p = np.nan_to_num(np.asarray(p_minus, np.float64), nan=0.0)
    n = np.broadcast_to(np.asarray(size, np.float64), p.shape)
    w = np.asarray(model["coef"])
    q = sigmoid(w[0] + features(p, np.maximum(n, 1)) @ w[1:])
    return np.where((p <= 0) | (n < 2), 0.0, q)


@lru_cache(maxsize=1)
def shipped() -> dict | None:
    return json.loads(MODEL_PATH.read_text()) if MODEL_PATH.exists() else None


def probability(p_minus, size) -> np.ndarray:
    """P(stray) by the shipped model (p- itself where none is shipped)."""
    model = shipped()
    p = np.nan_to_num(np.asarray(p_minus, np.float64), nan=0.0)
    return p if model is None else predict(model, p, size)
