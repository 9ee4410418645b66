"""The perfect greedy annotator: knowing the truth, each action is the merge or the clean-up (reject a
cluster's members who are not its majority person) that fixes the most pairwise errors; it never
spends an action on a confirm or a "no". Its pairwise-F curve bounds what a review order can reach."""
from __future__ import annotations

import numpy as np


def _pairs(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    return float((x * (x - 1) / 2).sum())


def _f(tp: float, pred: float, true: float) -> float:
    p = tp / pred if pred else 1.0
    r = tp / true if true else 1.0
    return 2 * p * r / (p + r) if p + r else 0.0


def greedy_oracle(truth: np.ndarray, labels: np.ndarray, max_actions: int = 1000,
                  target: float | None = None) -> list[float]:
    """Pairwise F after 0, 1, 2, ... greedy actions from ``labels`` (-1: a singleton each)."""
    truth = np.unique(np.asarray(truth), return_inverse=True)[1]
    labels = np.asarray(labels, np.int64).copy()
    if truth.shape != labels.shape:
        raise ValueError(f"truth {truth.shape} and labels {labels.shape} differ")
    nxt = labels.max() + 1 if len(labels) else 0
    for i in np.flatnonzero(labels < 0):
        labels[i], nxt = nxt, nxt + 1
    labels = np.unique(labels, return_inverse=True)[1]
    k, persons = labels.max() + 1, truth.max() + 1
    c = np.zeros((k, persons), np.float64)
    np.add.at(c, (labels, truth), 1.0)
    true_pairs = _pairs(np.bincount(truth))
    s = c @ c.T
    alive = np.ones(k, bool)
    curve = [_f(_pairs(c), _pairs(c.sum(1)), true_pairs)]
    for _ in range(max_actions):
        if target is not None and curve[-1] >= target:
            break
        n = c.sum(1)
        g = 2 * s - np.outer(n, n)
        np.fill_diagonal(g, -np.inf)
        g[~alive, :] = -np.inf
        g[:, ~alive] = -np.inf
        a, b = np.unravel_index(int(np.argmax(g)), g.shape)
        merge = g[a, b]
        maj = c.max(1)
        clean = (n * n - (c * c).sum(1)) / 2 - (_row_pairs(c) - maj * (maj - 1) / 2)
        clean[~alive] = -np.inf
        r = int(np.argmax(clean))
        if max(merge, clean[r]) <= 0:
            break
        if merge >= clean[r]:
            c[a] += c[b]
            c[b] = 0
            alive[b] = False
            s[a] += s[b]
            s[:, a] = s[a]
            s[a, a] = c[a] @ c[a]
            s[b] = 0
            s[:, b] = 0
        else:
            c, s, alive = _clean(c, s, alive, r)
        curve.append(_f(_pairs(c), _pairs(c.sum(1)), true_pairs))
    return curve


def _row_pairs(c: np.ndarray) -> np.ndarray:
    return (c * (c - 1) / 2).sum(1)


def _clean(c, s, alive, r):
    """Reject the members of cluster ``r`` who are not its majority person: each becomes a singleton."""
    t = int(np.argmax(c[r]))
    keep = c[r, t]
    persons = np.repeat(np.arange(c.shape[1]), c[r].astype(np.int64))
    persons = persons[persons != t]
    c[r] = 0
    c[r, t] = keep
    new = np.zeros((len(persons), c.shape[1]))
    new[np.arange(len(persons)), persons] = 1.0
    c = np.vstack([c, new])
    alive = np.concatenate([alive, np.ones(len(persons), bool)])
    return c, c @ c.T, alive
