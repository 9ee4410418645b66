"""hnsw-join: the strong edges of isotropic synthetic faces as a full search finds them, a valid graph, and
the repair search for rows the join left alone."""
from __future__ import annotations

import numpy as np

from pipeline.clustering.knn import build_knn, resolve_index
from pipeline.clustering.knn_join import hnsw_join


def faces(n: int, seed: int = 0) -> np.ndarray:
    """bench/clustering_speed.py's synthetic faces: 128-d, identities of 1 + Geometric(0.1), cos ~0.55 within."""
    rng = np.random.default_rng(seed)
    sizes = 1 + rng.geometric(0.1, n) - 1
    labels = np.repeat(np.arange(n), sizes)[:n]
    c = rng.standard_normal((n, 128)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = c[labels] + 0.9 * rng.standard_normal((n, 128)).astype(np.float32) / np.sqrt(128)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def strong_recall(x: np.ndarray, idx: np.ndarray, k: int, rows: np.ndarray) -> float:
    s = x[rows] @ x.T
    s[np.arange(len(rows)), rows] = -np.inf
    top = np.argsort(-s, axis=1)[:, :k]
    found = total = 0
    for r, i in enumerate(rows):
        want = {int(j) for j in top[r] if s[r, j] >= 0.5}
        found += len(want & set(idx[i].tolist()))
        total += len(want)
    assert total > 500
    return found / total


def test_strong_edges_found_and_graph_valid():
    x = faces(20_000)
    g = build_knn(x, 30, "hnsw-join")
    assert g.index_kind == "hnsw-join" and g.indices.shape == (20_000, 30)
    rows = np.random.default_rng(1).choice(20_000, 300, replace=False)
    assert strong_recall(x, g.indices, 30, rows) >= 0.99
    assert not np.any(g.indices == np.arange(20_000)[:, None])
    assert np.all(np.diff(g.sims, axis=1) <= 1e-6)
    ok = g.indices >= 0
    got = np.einsum("nd,nkd->nk", x, x[np.where(ok, g.indices, 0)])
    np.testing.assert_allclose(got[ok], g.sims[ok], atol=1e-4)
    # a row lists each neighbour once
    assert all(len(set(r[r >= 0].tolist())) == int((r >= 0).sum()) for r in g.indices[:500])


def test_rows_left_alone_are_searched_again():
    x = faces(3_000)
    # strong above any similarity: every row counts as alone, so every row is searched in the index
    idx, sims, info = hnsw_join(x, 10, strong=1.01)
    assert info["searched"] == 3_000
    exact = build_knn(x, 10, "flat")
    hits = np.mean([len(set(a) & set(b)) for a, b in zip(exact.indices, idx)]) / 10
    assert hits > 0.9
    _, _, light = hnsw_join(x, 10)
    assert light["searched"] < 3_000 and light["join_rounds"] >= 1
    # few=2: rows with one strong neighbour (a pair, or a person split in two) are searched as well
    _, _, pairs = hnsw_join(x, 10, few=2)
    assert light["searched"] < pairs["searched"] < 3_000


def test_projection_keeps_unit_rows_and_is_skipped_when_not_smaller():
    from pipeline.clustering.knn_join import projected

    x = faces(200)
    y = projected(x, 64)
    assert y.shape == (200, 64) and y.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(projected(x, 64), y)  # seeded: the same projection each call
    assert projected(x, None) is x and projected(x, 128) is x


def test_methods_ask_for_the_strong_edge_graph_only_when_they_read_strong_edges_only(monkeypatch):
    from pipeline.clustering import methods

    asked = []

    def fake_build(emb, k, index, cache_dir=None, *, progress=None, min_sim=None):
        asked.append(min_sim)
        return build_knn(emb, k, "flat")

    monkeypatch.setattr(methods, "build_knn", fake_build)
    x = faces(300)
    methods.cluster(x, "infomap")  # threshold 0.5
    methods.cluster(x, "infomap", threshold=0.3)  # reads weak edges: a full search
    methods.cluster(x, "dbscan")  # eps 0.95: cos >= 0.55
    picked = [resolve_index(50_000, "auto", gpu=False, min_sim=m) for m in asked]
    assert picked == ["hnsw-join", "hnsw", "hnsw-join"]


def test_the_same_rows_give_the_same_graph():
    x = faces(5_000, seed=3)
    a, sa, _ = hnsw_join(x, 30)
    b, sb, _ = hnsw_join(x, 30)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)
