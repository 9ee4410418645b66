"""P(two clusters are one identity | pair features): an L2-regularised logistic regression, fitted by
Newton steps in NumPy on standardised features. The shipped coefficients are ``merge_model.json``
(written by ``bench/merge_queue.py``, the L2 strength chosen on an inner split of dev data).

The size features are clipped to the range the fit saw (``lo``/``hi`` of :data:`CLIPPED`): its dev people
have at most 60 photos each, so a larger cluster lies outside the fitted sizes, and a size effect learned
near a cap is an artifact of it (when the fit's people had at most 10 photos, glint-sample's true merges,
unclipped, got a mean probability of 0.055 against 0.43-0.48 on the training sets'; the fit no longer uses
those sets, ``bench/merge_queue.py``). Similarities are not clipped: a pair more alike than any seen is
still more alike. A model may read a subset of :data:`~pipeline.review.candidates.FEATURES` (its
``features``).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from .candidates import FEATURES
from .logistic import newton_fit, sigmoid

MODEL_PATH = Path(__file__).with_name("merge_model.json")
CLIPPED = ("log_small", "log_large")  # features held to the fitted range (see the module docstring)


def _columns(use) -> np.ndarray:
    unknown = [f for f in use if f not in FEATURES]
    if unknown or not len(use):
        raise ValueError(f"a model reads some of {FEATURES}, got {list(use)}")
    return np.array([FEATURES.index(f) for f in use])


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50, use=FEATURES) -> dict:
    """Fit on (M, F) features and (M,) 0/1 labels, reading only the features ``use``; returns the model
    as a JSON-able dict."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or x.shape[1] != len(FEATURES) or y.shape != (x.shape[0],):
        raise ValueError(f"features (M, {len(FEATURES)}) and labels (M,) needed, got {x.shape}, {y.shape}")
    x = x[:, _columns(use)]
    mean, std = x.mean(0), np.maximum(x.std(0), 1e-6)
    w = newton_fit((x - mean) / std, y, l2, iters)
    return {"features": list(use), "mean": mean.tolist(), "std": std.tolist(), "coef": w.tolist(), "l2": l2,
            "lo": x.min(0).tolist(), "hi": x.max(0).tolist()}


def predict(model: dict, x: np.ndarray) -> np.ndarray:
    """(M,) probabilities for (M, F) features."""
    x = np.asarray(x, np.float64).reshape(-1, len(FEATURES))[:, _columns(model["features"])]
    w = np.asarray(model["coef"])
    if "lo" in model:  # sizes beyond the fitted range count as its edge
        clip = np.isin(np.asarray(model["features"]), CLIPPED)
        x = np.where(clip, np.clip(x, np.asarray(model["lo"]), np.asarray(model["hi"])), x)
    z = (x - np.asarray(model["mean"])) / np.asarray(model["std"])
    return sigmoid(w[0] + z @ w[1:])


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def choose(x: np.ndarray, y: np.ndarray, inner: np.ndarray, l2s=(0.01, 0.1, 1.0, 10.0, 100.0),
           use=FEATURES) -> tuple[dict, dict]:
    """Pick the L2 strength by log-loss on the rows where ``inner`` is True (fitted on the rest), then
    refit on all rows. Returns (model, {l2: inner log-loss})."""
    losses = {}
    for l2 in l2s:
        m = fit(x[~inner], y[~inner], l2, use=use)
        losses[l2] = log_loss(y[inner], predict(m, x[inner]))
    best = min(losses, key=losses.get)
    return fit(x, y, best, use=use), losses


@lru_cache(maxsize=1)
def shipped() -> dict:
    return json.loads(MODEL_PATH.read_text())


def probability(x: np.ndarray) -> np.ndarray:
    return predict(shipped(), x)


def probability_floor() -> float:
    """Pairs less likely than this are not offered (``p_min`` of the shipped model; 0 when absent)."""
    return float(shipped().get("p_min", 0.0))


def reliability(y: np.ndarray, p: np.ndarray, edges=(0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0)) -> list[dict]:
    """A reliability table: per bin of predicted probability, the pairs, the mean prediction and the
    observed share of same-identity pairs (a calibrated model has the two close)."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} differ")
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (p >= lo) & ((p < hi) if hi < 1.0 else (p <= hi))
        out.append({"bin": [lo, hi], "pairs": int(m.sum()), "mean_p": float(p[m].mean()) if m.any() else None,
                    "observed": float(y[m].mean()) if m.any() else None})
    return out
