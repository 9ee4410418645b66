"""Low-resolution copies of labeled faces: a label-preserving augmentation for a low-resolution target domain.

A retraining toward faces the recognizer sees at low resolution (CCTV stills, small faces in group photos)
adds, for every labeled face, ``copies`` degraded copies with the same identity: the crop downscaled to a
size drawn (seeded) from ``sizes`` (``cv2.INTER_AREA``) and scaled back to 112 px (``cv2.INTER_LINEAR``).
``bench/retrain_domain.py`` measured it on LFW at 16 px (``bench/results/retrain_domain.md``); the same
``degrade`` makes that benchmark's target domain.
"""
from __future__ import annotations

import cv2
import numpy as np

LOWRES_SIZES = (12, 16, 20, 24)  # px: the sizes a copy is drawn from
COPIES = 2  # low-resolution copies per labeled face
SEED = 1


def degrade(crops: np.ndarray, resolution: int, grey: bool = False) -> np.ndarray:
    """(N, 112, 112, 3) uint8 BGR -> the same faces at ``resolution`` px, scaled back up to 112."""
    if crops.ndim != 4 or crops.shape[1:] != (112, 112, 3) or crops.dtype != np.uint8:
        raise ValueError(f"crops must be (N, 112, 112, 3) uint8, got {crops.shape} {crops.dtype}")
    out = np.empty_like(crops)
    for i, c in enumerate(crops):
        small = cv2.resize(c, (resolution, resolution), interpolation=cv2.INTER_AREA)
        big = cv2.resize(small, (112, 112), interpolation=cv2.INTER_LINEAR)
        if grey:
            big = cv2.cvtColor(cv2.cvtColor(big, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        out[i] = big
    return out


def lowres_copies(crops: np.ndarray, sizes: tuple[int, ...] = LOWRES_SIZES, copies: int = COPIES,
                  seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(copies * N, 112, 112, 3) degraded crops and the source row of each (copy k of face i is row k * N + i)."""
    n = len(crops)
    drawn = np.random.default_rng(seed).choice(sizes, size=(copies, n))
    out = np.empty((copies * n, *np.shape(crops)[1:]), np.uint8)
    for k in range(copies):
        for i in range(n):
            out[k * n + i] = degrade(crops[i][None], int(drawn[k, i]))[0]
    return out, np.tile(np.arange(n), copies)


def with_lowres_copies(crops: np.ndarray, labels: np.ndarray, weights: np.ndarray, labeled: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A training set's (crops, labels, weights) with low-resolution copies of the ``labeled`` rows appended
    (each copy keeps its face's label and weight); the other rows (pseudo-labeled faces) get none."""
    rows = np.flatnonzero(np.asarray(labeled, bool))
    if len(rows) == 0:
        return crops, labels, weights
    extra, src = lowres_copies(crops[rows])
    src = rows[src]
    return (np.concatenate([crops, extra]), np.concatenate([np.asarray(labels), np.asarray(labels)[src]]),
            np.concatenate([np.asarray(weights), np.asarray(weights)[src]]))
