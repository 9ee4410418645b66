"""Recall-aware priority: the expected number of pairwise errors a review item fixes, per action.

* A merge pair (sizes ``a``, ``b``, probability ``q`` that they are one person): a "yes" joins ``a*b``
  pairs that belong together, so it fixes ``q*a*b`` false-negative pairs in expectation; one action.
* A cluster to clean (members with p- ``p_i``): member ``i`` is someone else with probability ``p_i``,
  and rejecting it fixes the false-positive pairs it forms with the right members, about
  ``n - 1 - (W - p_i)`` of them (``W = sum p``); one action: the strays are rejected with the confirm of
  the rest in one decision (the cluster page's R). A split per other person with several faces there
  is an extra action p- cannot foresee. (Counting ``1 + P(any wrong)`` actions, reject then confirm, as
  before that decision existed: 421 actions to F 0.99 on lfw16_train and 130 on lfw20_train; one
  action: 380 and 132, bench/review_queue_replay.py.) A cluster expected to hold less than :data:`CLEAN_MIN`
  wrong pair is not offered for clean-up (:func:`worth_cleaning`): on the training sets (lfw20_train,
  lfw16_train) 1 of the 252 clusters under that had a wrong member, so its confirm is an action spent
  for nothing.
"""
from __future__ import annotations

import numpy as np


def merge_gain(q, a, b) -> np.ndarray:
    return np.asarray(q, np.float64) * np.asarray(a, np.float64) * np.asarray(b, np.float64)


def cleanup_gain(p_minus) -> tuple[float, float]:
    """(expected pairwise errors fixed, expected actions) of reviewing one cluster."""
    p = np.nan_to_num(np.asarray(p_minus, np.float64), nan=0.0)
    if p.size == 0:
        return 0.0, 1.0
    n, w = p.size, p.sum()
    fixed = float((p * np.maximum(n - 1 - (w - p), 0.0)).sum())
    return fixed, 1.0


CLEAN_MIN = 1.0  # expected wrong pairs; chosen on the LFW training identities only


def worth_cleaning(fixed: float) -> bool:
    """Whether a clean-up expected to fix ``fixed`` pairs is offered at all."""
    return fixed >= CLEAN_MIN


def per_action(fixed, actions) -> np.ndarray:
    return np.asarray(fixed, np.float64) / np.maximum(np.asarray(actions, np.float64), 1e-9)


MAX_PARTNERS = 8  # clusters shown with one cluster in a merge group
SMALL = 1  # clusters of at most this many faces are looked for past their nearest once the likely merges are done
SMALL_SCORED = 200  # of those, at most this many (the nearest to a cluster) are scored at one listing
DEEP_MAX = 40  # how far down a cluster's (or a rejected face's) nearest clusters the queue looks at most


def merge_groups(pairs, sizes: dict, p_min: float = 0.0, max_partners: int = MAX_PARTNERS) -> list[tuple[float, int, list]]:
    """A cluster shown with all its likely partners at once (one decision: the person ticks the ones
    that are the same person, or answers "none"). ``pairs``: (a, b, q) with q the probability that a
    and b are one identity; partners with q < ``p_min`` are left out. Every cluster anchors one group,
    its ``max_partners`` most likely partners; the group fixes ``sum q_i*|A|*|B_i|`` pairs in expectation
    for one action, whatever the answers. Returns (gain, anchor, [(other, q), ...]) most gain first."""
    by: dict[int, list] = {}
    for a, b, q in pairs:
        if q >= p_min and a != b:
            by.setdefault(a, []).append((b, q))
            by.setdefault(b, []).append((a, q))
    out = []
    for a, partners in by.items():
        partners = sorted(partners, key=lambda x: (-x[1], x[0]))[:max_partners]
        gain = float(sizes[a] * sum(q * sizes[b] for b, q in partners))
        out.append((gain, a, partners))
    out.sort(key=lambda g: (-g[0], g[1]))
    return out


def probability_floor(q, y, weight, lost: float = 0.01) -> float:
    """The largest probability floor that drops at most ``lost`` of the true merges' weight (pairs
    fixed, ``|A|*|B|``) among labelled candidate pairs ``q`` (predicted), ``y`` (0/1): chosen on
    training data, it ends the merge queue where what is left is negligible."""
    q, y, w = (np.asarray(v, np.float64) for v in (q, y, weight))
    if q.shape != y.shape or q.shape != w.shape:
        raise ValueError(f"q, y and weight must have one shape, got {q.shape}, {y.shape}, {w.shape}")
    total = float((y * w).sum())
    if total <= 0:
        return 0.0
    best = 0.0
    for t in np.unique(q):
        if float((y * w)[q < t].sum()) <= lost * total:
            best = max(best, float(t))
    return best
