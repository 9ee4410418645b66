"""Split people: one person spread over several pseudo-classes is pushed apart from itself by the margin loss.

Two remedies, both driven by how close class centroids are (cosine of L2-normalised class means):

* ``merge_close_clusters(embeddings, labels, threshold)``: before training, clusters whose centroids
  have cosine >= ``threshold`` are joined (transitively: connected components of the "close" graph).
* ``close_class_mask(centroids, threshold)``: while training, the negative logits of classes whose
  centroid is that close to the sample's own class are left out of the softmax (a (C, C) bool mask
  ``mask[y, j]``: leave class j out for samples of class y), so near-duplicate classes are not pushed
  apart; see ``pipeline.recognition.losses.CosFaceLoss``'s ``ignore`` argument.
"""
from __future__ import annotations

import numpy as np


def class_centroids(embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, d) L2-normalised mean embedding per class id in [0, C); a class with no row is all zero."""
    emb = np.asarray(embeddings, np.float64)
    lab = np.asarray(labels)
    if emb.ndim != 2 or lab.shape != (emb.shape[0],):
        raise ValueError(f"embeddings (N, d) and labels (N,) expected, got {emb.shape} and {lab.shape}")
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    sums = np.zeros((num_classes, emb.shape[1]))
    np.add.at(sums, lab.astype(np.int64), emb)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def close_class_mask(centroids: np.ndarray, threshold: float) -> np.ndarray:
    """(C, C) bool, True where two different classes' centroids have cosine >= ``threshold``."""
    c = np.asarray(centroids, np.float32)
    if c.ndim != 2:
        raise ValueError(f"centroids must be (C, d), got {c.shape}")
    mask = (c @ c.T) >= threshold
    np.fill_diagonal(mask, False)
    return mask


def merge_close_clusters(embeddings: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster labels (N,) with clusters whose centroids have cosine >= ``threshold`` joined; -1 stays -1.

    Merged clusters take the smallest original id among them, so untouched clusters keep their ids."""
    lab = np.asarray(labels).astype(np.int64)
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or lab.shape != (emb.shape[0],):
        raise ValueError(f"embeddings (N, d) and labels (N,) expected, got {emb.shape} and {lab.shape}")
    member = lab >= 0
    ids, pos = np.unique(lab[member], return_inverse=True)
    if len(ids) < 2:
        return lab.copy()
    close = close_class_mask(class_centroids(emb[member], pos, len(ids)), threshold)
    root = np.arange(len(ids))

    def find(a: int) -> int:
        while root[a] != a:
            root[a] = root[root[a]]
            a = root[a]
        return a

    for i, j in zip(*np.nonzero(np.triu(close, 1))):
        ri, rj = find(int(i)), find(int(j))
        root[max(ri, rj)] = min(ri, rj)
    final = np.array([find(i) for i in range(len(ids))])
    out = lab.copy()
    out[member] = ids[final[pos]]
    return out
