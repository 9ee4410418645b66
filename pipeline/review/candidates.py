"""Candidate merge pairs: for each cluster its nearest other clusters by centroid cosine (faiss, exact
inner product), and for each face its nearest clusters other than its own (where a rejected face may
belong). Each pair carries the features the merge model reads (:data:`FEATURES`)."""
from __future__ import annotations

import numpy as np

FEATURES = ("centroid_cos", "best_link", "median_link", "log_small", "log_large", "p_minus", "rank_far", "rank_near")
# best_link / median_link: the best member-to-member similarity, and the median over the smaller
# cluster's members of each one's best similarity to the other, both over the members a cluster is
# sure of (p- < TRUSTED; all of them where none is): a stray member does not link two people.
# rank_far / rank_near: log of where each cluster stands among the other's nearest clusters by centroid
# (1 = its nearest; RANK_CAP = not among its 10 nearest), the larger and the smaller of the two. A rank
# reads the run's own scale, where a cosine means different things at 16 px and at full resolution: on
# the training identities it lowered the inner log-loss on every set (lfw20 0.187 -> 0.179, lfw16
# 0.272 -> 0.271, with up to 60 photos a person 0.207 -> 0.198 and 0.269 -> 0.265) and, fitted on the
# low-resolution sets, on the full-resolution ones (0.0182 -> 0.0177).
TRUSTED = 0.5
RANK_CAP = 11
# The queue reads every similarity on features whitened by the run's clusters as they are
# (pipeline/clustering/wccn.py), computed again at each listing. On the training identities
# (bench/review_queue_replay.py --wccn=S --wccn_live=1), actions to F 0.99 on lfw16 / lfw20 / lfw16w / lfw20w_train:
# none 321 / 125 / 362 / 122 (930 in all); S 0.1: 315 / 123 / 326 / 121 (885); 0.3: 318 / 126 / 317 / 119 (880);
# 1.0: 303 / 121 / 342 / 124 (890); 3.0: 319 / 132 / 343 / 123 (917); whitened once, by the clusters as built
# (S 1.0): 321 / 117 / 345 / 125. The merge model refitted on whitened features (S 1.0) took 465 on lfw16_train.
# Chosen: the fewest actions in all.
WHITEN_SHRINK = 0.3


def _norm(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def members_of(labels: np.ndarray, k: int) -> list[np.ndarray]:
    """The faces of each label 0..k-1 (ascending; labels < 0 and >= k left out), by one sort: O(N log N), where
    one comparison per cluster is O(N k) (100k clusters of 1M faces: 1e11)."""
    labels = np.asarray(labels, np.int64)
    if labels.ndim != 1:
        raise ValueError(f"labels (N,) needed, got {labels.shape}")
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    return [order[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


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


def neighbour_ranks(cent: np.ndarray, rows) -> dict[int, dict[int, int]]:
    """For each cluster in ``rows``: {other cluster: its rank among this one's nearest by centroid}, the
    first RANK_CAP - 1 of them (1 = nearest)."""
    rows = np.asarray(sorted({int(r) for r in rows}), np.int64)
    ids, _ = nearest_others(cent, RANK_CAP - 1, rows)
    return {int(a): _positions(int(a), nbrs) for a, nbrs in zip(rows.tolist(), ids.tolist())}


def _positions(a: int, ids) -> dict[int, int]:
    others = [int(b) for b in ids if b >= 0 and b != a][:RANK_CAP - 1]
    return {b: r for r, b in enumerate(others, 1)}


def rank_features(ranks: dict, a: int, b: int) -> list[float]:
    """[log of the larger, log of the smaller] of b's rank among a's nearest and a's among b's."""
    rab, rba = ranks.get(a, {}).get(b, RANK_CAP), ranks.get(b, {}).get(a, RANK_CAP)
    return [float(np.log(max(rab, rba))), float(np.log(min(rab, rba)))]


def pair_features(emb, members, pmax, a, b, cos, p=None, ranks: dict | None = None) -> list[float]:
    """The features of :data:`FEATURES` for clusters ``a`` and ``b`` (``ranks``: from :func:`neighbour_ranks`
    over the same clusters; without it, neither is among the other's nearest)."""
    na, nb = len(members[a]), len(members[b])
    ma, mb = (members[a], members[b]) if p is None else (_trusted(members[a], p), _trusted(members[b], p))
    sims = emb[ma] @ emb[mb].T
    median = np.median(sims.max(1) if len(ma) <= len(mb) else sims.max(0))
    return [float(cos), float(sims.max()), float(median), float(np.log(min(na, nb))), float(np.log(max(na, nb))),
            float(max(pmax[a], pmax[b]))] + rank_features(ranks or {}, a, b)


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
    members = members_of(labels, n_clusters)
    p = np.nan_to_num(np.asarray(p_minus, np.float64), nan=0.0)
    pmax = np.array([p[m].max() if len(m) else 0.0 for m in members])
    idx, sims = _knn(cent, cent, max(k, RANK_CAP) + 1)
    found: dict[tuple, float] = {}  # (a, b) -> centroid similarity, in the order found
    for a in (range(n_clusters) if only is None else [int(x) for x in only]):
        for b, s in zip(idx[a][:k + 1].tolist(), sims[a][:k + 1].tolist()):
            if b >= 0 and b != a and len(members[a]) and len(members[b]):
                found.setdefault((min(a, b), max(a, b)), s)
    ranks = {c: _positions(c, idx[c].tolist()) for c in {c for key in found for c in key}}
    feats = [pair_features(emb, members, pmax, a, b, s, p, ranks) for (a, b), s in found.items()]
    return np.array(list(found), np.int64).reshape(-1, 2), np.array(feats, np.float32).reshape(-1, len(FEATURES))


def nearest_others(cent: np.ndarray, k: int = 10, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """(R, k) the ``k`` nearest other clusters by centroid of each cluster (or of the clusters ``rows``)
    and their similarities (-1 pads)."""
    cent = np.asarray(cent, np.float32)
    if cent.ndim != 2:
        raise ValueError(f"centroids (K, d) needed, got {cent.shape}")
    rows = np.arange(len(cent)) if rows is None else np.asarray(rows, np.int64)
    ids, sims = np.full((len(rows), k), -1, np.int64), np.full((len(rows), k), -1.0, np.float32)
    if len(cent) > 1 and len(rows):
        idx, ss = _knn(cent[rows], cent, k + 1)
        for i, a in enumerate(rows.tolist()):
            keep = (idx[i] != a) & (idx[i] >= 0)
            found = idx[i][keep][:k]
            ids[i, :len(found)], sims[i, :len(found)] = found, ss[i][keep][:k]
    return ids, sims


def lone_groups(cent: np.ndarray, ids: np.ndarray, rows, no_pairs: set, k: int, deep_max: int,
                limit: int) -> dict[int, list[int]]:
    """{ids[r]: the ids of its ``k`` nearest other clusters by centroid whose pair (min, max) is not in
    ``no_pairs``, looking at most ``deep_max`` down} for the rows ``rows`` of ``cent`` (``ids``: each row's
    cluster id); only the ``limit`` rows whose nearest open cluster is closest, nearest first (the merge model's
    features that score them are a loop over pairs)."""
    from collections import Counter

    rows = [int(r) for r in rows]
    if not rows or len(ids) < 2:
        return {}
    nos = Counter(c for pair in no_pairs for c in pair)
    depth = min(k + max(nos[int(ids[r])] for r in rows), deep_max, len(ids) - 1)
    nbr, sims = nearest_others(cent, depth, rows)
    groups, nearest = {}, {}
    for r, row, sim in zip(rows, nbr.tolist(), sims.tolist()):
        a = int(ids[r])
        open_ = [(b, s) for b, s in ((int(ids[j]), s) for j, s in zip(row, sim) if j >= 0)
                 if (min(a, b), max(a, b)) not in no_pairs][:k]
        groups[a], nearest[a] = [b for b, _ in open_], max((s for _, s in open_), default=-1.0)
    return {a: groups[a] for a in sorted(groups, key=lambda a: (-nearest[a], a))[:limit]}


def reverse_pairs(cent: np.ndarray, changed, rows, known_ids: np.ndarray, known_sims: np.ndarray,
                  k: int = 10) -> np.ndarray:
    """(M, 2) rows (a, c): clusters ``a`` of ``rows`` not in ``changed`` that now have a changed cluster
    ``c`` among their ``k`` nearest. ``known_ids`` / ``known_sims`` (K, k'): each cluster's nearest others
    before the change (rows into ``cent``; -1: gone or changed since).
    c's rank for a counts those still there and the changed ones nearer than c; a cluster beyond a's
    nearest before is no nearer than they were. A merge moves a centroid: the clusters it moved toward
    have it among their nearest now, though it may not have them among its own."""
    changed = np.asarray(sorted({int(c) for c in changed}), np.int64)
    known_ids, known_sims = np.asarray(known_ids, np.int64), np.asarray(known_sims, np.float64)
    if known_ids.shape != known_sims.shape or known_ids.shape[:1] != (len(cent),):
        raise ValueError(f"known neighbours ({len(cent)}, k) needed, got {known_ids.shape}, {known_sims.shape}")
    rest = np.setdiff1d(np.asarray(rows, np.int64), changed)
    if not len(changed) or not len(rest):
        return np.zeros((0, 2), np.int64)
    idx, sims = _knn(np.asarray(cent, np.float32)[rest], np.asarray(cent, np.float32)[changed], k)
    still = np.where(known_ids[rest] >= 0, known_sims[rest], -np.inf)  # (R, k'): neighbours still there
    before = (still[:, None, :] > sims[:, :, None]).sum(2)  # (R, k): of those, nearer than each changed one
    rank = 1 + before + np.arange(idx.shape[1])[None, :]  # the changed ones come sorted, nearest first
    hit = (idx >= 0) & (rank <= k)
    a = np.repeat(rest, idx.shape[1]).reshape(idx.shape)[hit]
    return np.stack([a, changed[idx[hit]]], 1).astype(np.int64).reshape(-1, 2)


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
    members = members_of(labels, n_clusters)
    if p_minus is not None:
        p = np.nan_to_num(np.asarray(p_minus, np.float64), nan=0.0)
        members = [_trusted(m, p) for m in members]
    rows = np.arange(len(emb)) if rows is None else np.asarray(rows, np.int64)
    idx, sims = np.full((len(emb), k + 1), -1, np.int64), np.zeros((len(emb), k + 1), np.float32)
    if len(rows):  # fewer clusters than k + 1: the rest stays -1
        found, sim = _knn(emb[rows], cent, k + 1)
        idx[rows, :found.shape[1]], sims[rows, :found.shape[1]] = found, sim
    offered = np.unique(idx[rows][idx[rows] >= 0])  # each one's nearest others: where a face would stand
    near = dict(zip(offered.tolist(), nearest_others(cent, RANK_CAP - 1, offered)[1]))
    for i in rows.tolist():
        j = 0
        for c, s in zip(idx[i], sims[i]):
            c = int(c)
            if c < 0 or c == labels[i] or j >= k or not len(members[c]):
                continue
            link = float((emb[members[c]] @ emb[i]).max())
            out[i, j] = c
            back = min(1 + int((near[c] > s).sum()), RANK_CAP)  # where the face would stand among c's nearest
            ranks = (j + 1, back)
            feats[i, j] = [s, link, link, 0.0, np.log(len(members[c])), 0.0, np.log(max(ranks)), np.log(min(ranks))]
            j += 1
    return out, feats

