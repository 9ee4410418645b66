"""The perfect greedy annotator: knowing the truth, each action is the merge or the clean-up that fixes
the most pairwise errors per action; it never spends an action on a confirm or a "no". Its pairwise-F
curve bounds what a review order can reach.

Two vocabularies. The issue's oracle (``split=False``): a clean-up rejects every member who is not the
cluster's majority person in one action, each becoming a singleton. The person's vocabulary
(``split=True``, what the simulated annotator may do): a clean-up splits each other person with at
least two faces there off into a new cluster (one action each) and rejects the single ones (one
action), so a person's faces that a cluster held together stay together; the oracle picks by errors
fixed per action."""
from __future__ import annotations

import numpy as np


def _pairs(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    return float((x * (x - 1) / 2).sum())


def _f(tp: float, pred: float, true: float) -> float:
    p = tp / pred if pred else 1.0
    r = tp / true if true else 1.0
    return 2 * p * r / (p + r) if p + r else 0.0


def _counts(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(clusters, persons) face counts; a face with label -1 is a singleton cluster of its own."""
    truth = np.unique(np.asarray(truth), return_inverse=True)[1]
    labels = np.asarray(labels, np.int64).copy()
    if truth.shape != labels.shape:
        raise ValueError(f"truth {truth.shape} and labels {labels.shape} differ")
    nxt = labels.max() + 1 if len(labels) else 0
    for i in np.flatnonzero(labels < 0):
        labels[i], nxt = nxt, nxt + 1
    labels = np.unique(labels, return_inverse=True)[1]
    c = np.zeros((labels.max() + 1 if len(labels) else 0, truth.max() + 1 if len(truth) else 0), np.float64)
    np.add.at(c, (labels, truth), 1.0)
    return c


def greedy_oracle(truth: np.ndarray, labels: np.ndarray, max_actions: int = 1000,
                  target: float | None = None, split: bool = False) -> list[float]:
    """Pairwise F after 0, 1, 2, ... greedy actions from ``labels`` (-1: a singleton each)."""
    c = _counts(truth, labels)
    true_pairs = _pairs(c.sum(0))
    s = c @ c.T
    alive = np.ones(len(c), bool)
    curve = [_f(_pairs(c), _pairs(c.sum(1)), true_pairs)]
    while len(curve) - 1 < max_actions and (target is None or curve[-1] < target):
        n = c.sum(1)
        g = 2 * s - np.outer(n, n)
        np.fill_diagonal(g, -np.inf)
        g[~alive, :] = -np.inf
        g[:, ~alive] = -np.inf
        a, b = np.unravel_index(int(np.argmax(g)), g.shape)
        merge = g[a, b]
        clean, cost = _clean_value(c, n, split)
        clean[~alive] = -np.inf
        r = int(np.argmax(clean / cost))
        if max(merge, clean[r]) <= 0:
            break
        if merge >= clean[r] / cost[r]:
            c[a] += c[b]
            c[b] = 0
            alive[b] = False
            s[a] += s[b]
            s[:, a] = s[a]
            s[a, a] = c[a] @ c[a]
            s[b] = 0
            s[:, b] = 0
            curve.append(_f(_pairs(c), _pairs(c.sum(1)), true_pairs))
            continue
        for step in _clean_steps(c[r], split):
            c, alive = _take(c, alive, r, step)
            curve.append(_f(_pairs(c), _pairs(c.sum(1)), true_pairs))
        s = c @ c.T
    return curve


def _clean_value(c: np.ndarray, n: np.ndarray, split: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster: (pairwise errors a clean-up fixes, actions it takes)."""
    maj = c.max(1)
    wrong_pairs = (n * n - (c * c).sum(1)) / 2
    if not split:
        lost = (c * (c - 1) / 2).sum(1) - maj * (maj - 1) / 2  # the other persons' pairs, now singletons
        return wrong_pairs - lost, np.ones(len(c))
    others = c.copy()
    others[np.arange(len(c)), np.argmax(c, 1)] = 0
    cost = (others >= 2).sum(1) + (others == 1).any(1)
    return wrong_pairs, np.maximum(cost, 1).astype(np.float64)


def _clean_steps(row: np.ndarray, split: bool) -> list[list[tuple[int, int]]]:
    """The actions of one clean-up: each a list of (person, faces) that leave together as one new
    cluster (split) or as singletons (reject: faces 1 each)."""
    t = int(np.argmax(row))
    others = [(int(p), int(row[p])) for p in np.flatnonzero(row) if p != t]
    if not split:
        return [[(p, 1) for p, k in others for _ in range(k)]]
    steps = [[(p, k)] for p, k in others if k >= 2]
    singles = [(p, 1) for p, k in others if k == 1]
    return steps + ([singles] if singles else [])


def _take(c: np.ndarray, alive: np.ndarray, r: int, step: list[tuple[int, int]]):
    """Move the faces of ``step`` out of cluster ``r``, each (person, faces) a new cluster."""
    new = np.zeros((len(step), c.shape[1]))
    for i, (p, k) in enumerate(step):
        c[r, p] -= k
        new[i, p] = k
    return np.vstack([c, new]), np.concatenate([alive, np.ones(len(step), bool)])
