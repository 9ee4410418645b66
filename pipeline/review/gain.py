"""Recall-aware priority: the expected number of pairwise errors a review item fixes, per action.

* A merge pair (sizes ``a``, ``b``, probability ``q`` that they are one person): a "yes" joins ``a*b``
  pairs that belong together, so it fixes ``q*a*b`` false-negative pairs in expectation; one action.
* A cluster to clean (members with p- ``p_i``): member ``i`` is someone else with probability ``p_i``,
  and rejecting it fixes the false-positive pairs it forms with the right members, about
  ``n - 1 - (W - p_i)`` of them (``W = sum p``); the person needs a reject when any member is wrong and
  one confirm: ``1 + P(any wrong)`` actions.
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
    return fixed, 1.0 + float(1.0 - np.prod(1.0 - p))


def per_action(fixed, actions) -> np.ndarray:
    return np.asarray(fixed, np.float64) / np.maximum(np.asarray(actions, np.float64), 1e-9)
