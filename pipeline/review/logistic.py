"""A small L2-regularised logistic regression by Newton steps, for the review queue's models."""
from __future__ import annotations

import numpy as np


def sigmoid(z) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def newton_fit(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 50) -> np.ndarray:
    """Weights [intercept, *coef] for (M, F) ``x`` and (M,) 0/1 ``y``; the intercept is not penalised."""
    z = np.hstack([np.ones((len(x), 1)), np.asarray(x, np.float64)])
    w = np.zeros(z.shape[1])
    reg = np.full(z.shape[1], float(l2))
    reg[0] = 0.0
    for _ in range(iters):
        p = sigmoid(z @ w)
        grad = z.T @ (p - y) + reg * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(reg) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w
