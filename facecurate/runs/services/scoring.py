"""Overlap scoring of unlabeled faces against the labeled identities (the app side of paper Sec. 3.1).

The labeled faces' class means (L2-normalised) are the classifier: a face's max-logit is its largest
cosine to a class mean. What "known" looks like is read off the labeled faces themselves, scored out of
fold: each labeled face against a class mean that leaves it out (genuine: what a known person scores)
and against the other identities only (impostor: what an unknown person scores). The threshold where
the two reference error rates are equal decides a single-mode unlabeled set (all disjoint or all
overlap), so no one has to pass a threshold, and vetoes a two-mode fit whose "overlap" mode is not
made of faces that score like known people.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipeline.overlap.separation import DISJOINT, OVERLAP, REJECTED, OverlapConfig, separate_overlap

#: Cosine used when the labeled set is too small to give a reference (about SFace's verification threshold).
FALLBACK_THRESHOLD = 0.363
MIN_REFERENCE = 10


@dataclass
class ClassMeans:
    identity_ids: np.ndarray  # (C,) int64
    means: np.ndarray  # (C, d) float32, rows L2-normalised
    sums: np.ndarray  # (C, d) float32, un-normalised sums (for leave-one-out)
    counts: np.ndarray  # (C,) int64


def class_means(embeddings: np.ndarray, identity: np.ndarray) -> ClassMeans:
    emb = np.asarray(embeddings, np.float32)
    ident = np.asarray(identity, np.int64)
    if emb.ndim != 2 or ident.shape != (emb.shape[0],):
        raise ValueError(f"embeddings (N, d) and identity (N,) expected, got {emb.shape} and {ident.shape}")
    ids, inv = np.unique(ident, return_inverse=True)
    sums = np.zeros((len(ids), emb.shape[1]), np.float32)
    np.add.at(sums, inv, emb)
    counts = np.bincount(inv, minlength=len(ids))
    means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return ClassMeans(ids, means.astype(np.float32), sums, counts)


def max_logits(cm: ClassMeans, emb: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(max cosine to a class mean, index of that class) per row."""
    from pipeline.recognition.models import max_logit_and_argmax  # (torch: imported in workers only)

    best = np.empty(len(emb), np.float32)
    arg = np.empty(len(emb), np.int64)
    for s in range(0, len(emb), chunk):
        best[s:s + chunk], arg[s:s + chunk] = max_logit_and_argmax(emb[s:s + chunk] @ cm.means.T)
    return best, arg


def reference_scores(cm: ClassMeans, emb: np.ndarray, identity: np.ndarray, chunk: int = 4096):
    """Out-of-fold (genuine, impostor) max-logits of the labeled faces; genuine only for identities of 2+."""
    pos = np.searchsorted(cm.identity_ids, identity)
    genuine, impostor = [], []
    for s in range(0, len(emb), chunk):
        e, p = emb[s:s + chunk], pos[s:s + chunk]
        sims = e @ cm.means.T
        rows = np.arange(len(e))
        sims[rows, p] = -np.inf
        other = sims.max(1) if cm.means.shape[0] > 1 else np.full(len(e), -1.0, np.float32)
        impostor.append(other)
        loo = cm.sums[p] - e
        n = np.linalg.norm(loo, axis=1)
        own = np.where(cm.counts[p] > 1, (e * loo).sum(1) / np.maximum(n, 1e-12), np.nan)
        genuine.append(np.maximum(own, other)[cm.counts[p] > 1])
    g = np.concatenate(genuine) if genuine else np.zeros(0)
    i = np.concatenate(impostor) if impostor else np.zeros(0)
    return g.astype(np.float64), i.astype(np.float64)


def equal_error_threshold(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """The score where the share of genuine below equals the share of impostor above."""
    if len(genuine) < MIN_REFERENCE or len(impostor) < MIN_REFERENCE:
        return FALLBACK_THRESHOLD
    grid = np.unique(np.concatenate([genuine, impostor]))
    g, i = np.sort(genuine), np.sort(impostor)
    miss = np.searchsorted(g, grid, side="left") / len(g)
    false = 1.0 - np.searchsorted(i, grid, side="left") / len(i)
    return float(grid[np.argmin(np.abs(miss - false))])


def separate(scores: np.ndarray, argmax: np.ndarray, threshold: float, config: OverlapConfig | None = None):
    """pipeline.overlap.separation.separate_overlap with the reference threshold for one mode, and the veto above."""
    cfg = replace(config or OverlapConfig(), one_mode_threshold=threshold)
    result = separate_overlap(scores, argmax, cfg)
    note = None
    if result.degenerate is None:
        ov, dj = result.state == OVERLAP, result.state == DISJOINT
        known_ov = float(np.mean(scores[ov] >= threshold)) if ov.any() else 1.0
        known_dj = float(np.mean(scores[dj] >= threshold)) if dj.any() else 0.0
        if known_ov < 0.5 or known_dj > 0.5:
            as_overlap = bool(np.median(scores) >= threshold)
            note = (f"two modes were fitted, but {known_ov:.0%} of the 'overlap' mode and {known_dj:.0%} of the "
                    f"'disjoint' mode score like known people (reference threshold {threshold:.3f}): one mode, "
                    f"taken as {'overlap' if as_overlap else 'disjoint'}")
            result.state[:] = OVERLAP if as_overlap else DISJOINT
            result.state[~np.isfinite(scores)] = REJECTED
            result.label[:] = np.where(result.state == OVERLAP, argmax, -1)
            result.degenerate = "one_mode"
            result.report = {**result.report, "degenerate": "one_mode", "message": note,
                             "one_mode_decision": "overlap" if as_overlap else "disjoint"}
            result.report["counts"] = {k: int(np.sum(result.state == c))
                                       for c, k in ((OVERLAP, "overlap"), (DISJOINT, "disjoint"), (REJECTED, "rejected"))}
    return result, note
