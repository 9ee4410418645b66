"""The ``hnsw-join`` kNN graph: a light HNSW build whose own links seed a local join through strong edges.

Face identities are tight groups: once a face has one neighbour of its own person, that neighbour's
neighbours hold the rest. So the HNSW index is built light (efConstruction 32, on a 64-d random projection
of the rows: faster, and on synthetic faces it linked more rows to their person than the full 128-d) and
never searched for every row; instead

1. **seed**: every row's level-0 HNSW links (both directions) with their inner products;
2. **join**: each row pulls in its neighbours' neighbours, through edges of similarity >= ``floor`` only
   (NN-descent's local join, restricted to the strong part of the graph), until no list changes; rows are
   revisited only when they or a strong neighbour changed;
3. **repair**: rows with fewer than ``few`` neighbours >= ``strong`` (the build did not link them to their
   person, or to only part of it), or still with fewer than k neighbours after filling from their
   neighbours' lists, are searched in the HNSW index (efSearch), and the join runs again around them.

Settings and measurements: ``HNSW_JOIN`` in pipeline/clustering/knn.py, bench/results/labels_scale.md and
knn_compare_join.md. Weak neighbours (below ``floor``) are whatever the steps met, so recall@k of the whole
list is lower than a full search's: only callers that read the strong edges get this graph from ``auto``.

Lists are (N, k) arrays, unsorted while they are built (each row's worst entry is replaced), sorted best
first at the end. Kernels are numba, compiled once and cached on disk.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(fastmath=True, inline="always", cache=True)
def _dot(x, i, j):
    s = np.float32(0.0)
    for t in range(x.shape[1]):
        s += x[i, t] * x[j, t]
    return s


@njit(inline="always", cache=True)
def _push(idx, sims, i, j, s):
    """Put (j, s) into row i's list if it beats the row's worst and is not there yet."""
    worst, at = sims[i, 0], 0
    for t in range(idx.shape[1]):
        if idx[i, t] == j:
            return False
        if sims[i, t] < worst:
            worst, at = sims[i, t], t
    if s <= worst:
        return False
    idx[i, at] = j
    sims[i, at] = s
    return True


@njit(inline="always", cache=True)
def _listed(idx, i, j):
    for t in range(idx.shape[1]):
        if idx[i, t] == j:
            return True
    return False


@njit(parallel=True, fastmath=True, cache=True)
def _link_sims(x, links):
    out = np.full(links.shape, -np.inf, np.float32)
    for i in prange(links.shape[0]):
        for t in range(links.shape[1]):
            j = links[i, t]
            if j >= 0:
                out[i, t] = _dot(x, i, j)
    return out


@njit(cache=True)
def _push_both(links, link_sims, idx, sims):
    for i in range(links.shape[0]):
        for t in range(links.shape[1]):
            j = links[i, t]
            if j >= 0 and j != i:
                _push(idx, sims, i, j, link_sims[i, t])
                _push(idx, sims, j, i, link_sims[i, t])


@njit(parallel=True, fastmath=True, cache=True)
def _join_rows(x, rows, idx0, sims0, idx, sims, floor, changed):
    """Each row in ``rows`` pulls its strong neighbours' strong neighbours (read from the snapshot)."""
    k = idx.shape[1]
    for a in prange(rows.shape[0]):
        i = rows[a]
        moved = False
        for t in range(k):
            j = idx0[i, t]
            if j < 0 or sims0[i, t] < floor:
                continue
            for u in range(k):
                m = idx0[j, u]
                if m < 0 or m == i or sims0[j, u] < floor or _listed(idx, i, m):
                    continue
                if _push(idx, sims, i, m, _dot(x, i, m)):
                    moved = True
        changed[i] = moved


@njit(parallel=True, fastmath=True, cache=True)
def _fill_rows(x, rows, idx0, idx, sims):
    """Fill each row's free slots (-1) from its neighbours' lists (read from the snapshot ``idx0``, so the
    result does not depend on thread timing), one neighbour at a time, until full."""
    k = idx.shape[1]
    for a in prange(rows.shape[0]):
        i = rows[a]
        for t in range(k):
            j = idx0[i, t]
            if j < 0:
                continue
            for u in range(k):
                m = idx0[j, u]
                if m >= 0 and m != i:
                    _push(idx, sims, i, m, _dot(x, i, m))
            if idx[i].min() >= 0:
                break


@njit(cache=True)
def _rows_to_revisit(idx, sims, changed, floor):
    mark = changed.copy()
    for i in range(idx.shape[0]):
        if mark[i]:
            continue
        for t in range(idx.shape[1]):
            j = idx[i, t]
            if j >= 0 and sims[i, t] >= floor and changed[j]:
                mark[i] = True
                break
    return np.flatnonzero(mark)


def strong_join(x: np.ndarray, idx: np.ndarray, sims: np.ndarray, rows: np.ndarray, floor: float,
                max_rounds: int = 12) -> int:
    """Local join from ``rows`` until no list changes (in place); returns the rounds run."""
    changed = np.zeros(idx.shape[0], np.bool_)
    rows = np.asarray(rows, np.int64)
    for r in range(max_rounds):
        if rows.size == 0:
            return r
        changed[:] = False
        _join_rows(x, rows, idx.copy(), sims.copy(), idx, sims, np.float32(floor), changed)
        if not changed.any():
            return r + 1
        rows = _rows_to_revisit(idx, sims, changed, np.float32(floor))
    return max_rounds


def level0_links(index) -> np.ndarray:
    """(N, 2M) level-0 neighbour ids of a faiss IndexHNSW (-1 where a row has fewer)."""
    import faiss

    h = index.hnsw
    nb = faiss.vector_to_array(h.neighbors)
    offsets = faiss.vector_to_array(h.offsets).astype(np.int64)
    cum = faiss.vector_to_array(h.cum_nneighbor_per_level).astype(np.int64)
    return nb[offsets[:-1, None] + np.arange(cum[0], cum[1])[None, :]].astype(np.int64)


def projected(x: np.ndarray, dims: int | None, seed: int = 0) -> np.ndarray:
    """Rows of ``x`` through a random orthogonal projection to ``dims`` dimensions, unit length again
    (``x`` itself when ``dims`` is None or not smaller)."""
    if dims is None or dims >= x.shape[1]:
        return x
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((x.shape[1], x.shape[1])))
    y = x @ q[:, :dims].astype(np.float32)
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(y, dtype=np.float32)


def hnsw_join(x: np.ndarray, k: int, *, M: int = 32, ef_construction: int = 32, ef_search: int = 128,
              build_dims: int | None = 64, floor: float = 0.4, strong: float = 0.5, few: int = 1,
              progress=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(N, k) neighbour ids and similarities (best first; self excluded) and a few counts of the steps.

    The index is built (and searched, in the repair) on ``build_dims`` random projections of the rows: it
    only has to link each row to some of its person, every similarity kept is computed on the full rows."""
    import faiss

    n, d = x.shape
    if n < 2:
        raise ValueError(f"hnsw-join needs at least 2 rows, got {n}")
    y = projected(x, build_dims)
    index = faiss.IndexHNSWFlat(y.shape[1], M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(y)
    if progress:
        progress(1, 4, stage="knn-build")
    idx = np.full((n, k), -1, np.int64)
    sims = np.full((n, k), -np.inf, np.float32)
    links = level0_links(index)
    _push_both(links, _link_sims(x, links), idx, sims)
    rounds = strong_join(x, idx, sims, np.arange(n, dtype=np.int64), floor)
    if progress:
        progress(2, 4, stage="knn-join")
    # a list shorter than k (a row HNSW linked to few others) is filled from its neighbours' lists
    short = np.flatnonzero(idx.min(axis=1) < 0)
    if short.size:
        _fill_rows(x, short, idx.copy(), idx, sims)
    alone = np.flatnonzero(((sims >= strong).sum(axis=1) < few) | (idx.min(axis=1) < 0))
    if alone.size:
        index.hnsw.efSearch = max(ef_search, k + 1)
        found = index.search(y[alone], min(k + 1, n))[1].astype(np.int64)
        found[found == alone[:, None]] = -1
        links = np.full((n, found.shape[1]), -1, np.int64)
        links[alone] = found
        _push_both(links, _link_sims(x, links), idx, sims)
        around = idx[alone][(sims[alone] >= floor) & (idx[alone] >= 0)]
        strong_join(x, idx, sims, np.unique(np.concatenate([alone, around])), floor)
    if progress:
        progress(3, 4, stage="knn-repair")
    order = np.argsort(-sims, axis=1, kind="stable")
    idx, sims = np.take_along_axis(idx, order, axis=1), np.take_along_axis(sims, order, axis=1)
    idx[~np.isfinite(sims)] = -1
    return idx, sims, {"join_rounds": rounds, "searched": int(alone.size)}
