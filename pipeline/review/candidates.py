"""Candidate merge pairs: for each cluster its nearest other clusters by centroid cosine (faiss, exact
inner product), and for each face its nearest clusters other than its own (where a rejected face may
belong). Each pair carries the features the merge model reads (:data:`FEATURES`)."""
from __future__ import annotations

import numpy as np

FEATURES = ("centroid_cos", "best_link", "median_link", "log_small", "log_large", "p_minus")
# best_link / median_link: the best member-to-member similarity, and the median over the smaller
# cluster's members of each one's best similarity to the other, both over the members a cluster is
# sure of (p- < TRUSTED; all of them where none is): a stray member does not link two people.
TRUSTED = 0.5


def _norm(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def centroids(emb: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, d) unit centroids of labels 0..k-1 (labels < 0 ignored)."""
    if emb.ndim != 2 or labels.shape != (emb.shape[0],):
        raise ValueError(f"embeddings (N, d) and labels (N,) needed, got {emb.shape} and {labels.shape}")
    cent = np.zeros((k, emb.shape[1]), np.float64)
    ok = labels >= 0
    np.add.at(cent, labels[ok], emb[ok])
    return _norm(cent).astype(np.float32)


def _knn(query: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatIP(base.shape[1])
    index.add(np.ascontiguousarray(base, np.float32))
    sims, idx = index.search(np.ascontiguousarray(query, np.float32), min(k, base.shape[0]))
    return idx, sims


def _trusted(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    sure = m[p[m] < TRUSTED]
    return sure if len(sure) else m


def pair_features(emb, members, pmax, a, b, cos, p=None) -> list[float]:
    na, nb = len(members[a]), len(members[b])
    ma, mb = (members[a], members[b]) if p is None else (_trusted(members[a], p), _trusted(members[b], p))
    sims = emb[ma] @ emb[mb].T
    median = np.median(sims.max(1) if len(ma) <= len(mb) else sims.max(0))
    return [float(cos), float(sims.max()), float(median), float(np.log(min(na, nb))), float(np.log(max(na, nb))),
            float(max(pmax[a], pmax[b]))]


def cluster_pairs(emb: np.ndarray, labels: np.ndarray, p_minus: np.ndarray, k: int = 10,
                  only=None) -> tuple[np.ndarray, np.ndarray]:
    """(M, 2) label pairs a < b (each cluster with its ``k`` nearest by centroid) and (M, F) features;
    ``only``: just the pairs of those clusters with their nearest (clusters review changed)."""
    emb = _norm(np.asarray(emb, np.float32))
    labels = np.asarray(labels, np.int64)
    n_clusters = int(labels.max()) + 1 if (labels >= 0).any() else 0
    if n_clusters < 2:
        return np.zeros((0, 2), np.int64), np.zeros((0, len(FEATURES)), np.float32)
    cent = centroids(emb, labels, n_clusters)
    members = [np.flatnonzero(labels == c) for c in range(n_clusters)]
    p = np.nan_to_num(np.asarray(p_minus, np.float64), nan=0.0)
    pmax = np.array([p[m].max() if len(m) else 0.0 for m in members])
    idx, sims = _knn(cent, cent, k + 1)
    seen, pairs, feats = set(), [], []
    for a in (range(n_clusters) if only is None else [int(x) for x in only]):
        for b, s in zip(idx[a], sims[a]):
            b = int(b)
            if b < 0 or b == a or not len(members[a]) or not len(members[b]):
                continue
            key = (min(a, b), max(a, b))
            if key in seen:
                continue
            seen.add(key)
            pairs.append(key)
            feats.append(pair_features(emb, members, pmax, key[0], key[1], s, p))
    return np.array(pairs, np.int64).reshape(-1, 2), np.array(feats, np.float32).reshape(-1, len(FEATURES))


def face_placements(emb: np.ndarray, labels: np.ndarray, k: int = 3, p_minus: np.ndarray | None = None,
                    rows=None) -> tuple[np.ndarray, np.ndarray]:
    """For every face (or the faces ``rows``), its ``k`` nearest clusters other than its own: (N, k)
    labels (-1 pad) and (N, k, F) features of the pair (the face alone against that cluster, p- 0)."""
    emb = _norm(np.asarray(emb, np.float32))
    labels = np.asarray(labels, np.int64)
    n_clusters = int(labels.max()) + 1 if (labels >= 0).any() else 0
    out = np.full((len(emb), k), -1, np.int64)
    feats = np.zeros((len(emb), k, len(FEATURES)), np.float32)
    if n_clusters == 0:
        return out, feats
    cent = centroids(emb, labels, n_clusters)
    members = [np.flatnonzero(labels == c) for c in range(n_clusters)]
    if p_minus is not None:
        p = np.nan_to_num(np.asarray(p_minus, np.float64), nan=0.0)
        members = [_trusted(m, p) for m in members]
    rows = np.arange(len(emb)) if rows is None else np.asarray(rows, np.int64)
    idx, sims = np.full((len(emb), k + 1), -1, np.int64), np.zeros((len(emb), k + 1), np.float32)
    if len(rows):  # fewer clusters than k + 1: the rest stays -1
        found, sim = _knn(emb[rows], cent, k + 1)
        idx[rows, :found.shape[1]], sims[rows, :found.shape[1]] = found, sim
    for i in rows.tolist():
        j = 0
        for c, s in zip(idx[i], sims[i]):
            c = int(c)
            if c < 0 or c == labels[i] or j >= k or not len(members[c]):
                continue
            link = float((emb[members[c]] @ emb[i]).max())
            out[i, j] = c
            feats[i, j] = [s, link, link, 0.0, np.log(len(members[c])), 0.0]
            j += 1
    return out, feats
