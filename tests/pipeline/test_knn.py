"""kNN graph: exact against brute force, approximate indexes close to exact, cache and atomic writes."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.clustering import knn as knn_mod
from pipeline.features import l2_normalize
from pipeline.clustering.knn import KnnGraph, build_knn


def clustered(n: int, d: int = 32, centres: int = 20, noise: float = 0.3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = l2_normalize(rng.standard_normal((centres, d)))
    x = c[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, d)) / np.sqrt(d)
    return l2_normalize(x)


def test_flat_matches_brute_force_and_excludes_self():
    x = clustered(500)
    g = build_knn(x, 10, "flat")
    assert g.indices.shape == (500, 10) and g.indices.dtype == np.int64 and g.sims.dtype == np.float32
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    expect = -np.sort(-s, axis=1)[:, :10]
    np.testing.assert_allclose(g.sims, expect, atol=1e-5)
    assert not np.any(g.indices == np.arange(500)[:, None])
    np.testing.assert_allclose(np.take_along_axis(s, g.indices, 1), g.sims, atol=1e-5)
    assert np.all(np.diff(g.sims, axis=1) <= 1e-6)


def test_duplicate_rows_keep_the_twin_and_drop_self():
    x = clustered(50)
    x[1] = x[0]
    g = build_knn(x, 3, "flat")
    assert 1 in g.indices[0] and 0 in g.indices[1]
    assert 0 not in g.indices[0]


@pytest.mark.parametrize("kind", ["ivf", "hnsw", "hnsw-join", pytest.param("nndescent", marks=pytest.mark.slow)])
def test_approximate_indexes_recall(kind):
    if kind == "nndescent":
        pytest.importorskip("pynndescent")
    x = clustered(4000, d=64, centres=100)
    exact = build_knn(x, 10, "flat")
    approx = build_knn(x, 10, kind)
    assert approx.index_kind == kind
    hits = [len(set(a) & set(b)) for a, b in zip(exact.indices, approx.indices)]
    assert np.mean(hits) / 10 > 0.9


def test_fewer_rows_than_k_pads():
    x = clustered(4)
    g = build_knn(x, 6, "flat")
    assert g.indices.shape == (4, 6)
    assert np.all(g.indices[:, 3:] == -1) and np.all(np.isneginf(g.sims[:, 3:]))
    assert np.all(g.indices[:, :3] >= 0)
    src, dst, _ = g.edges()
    assert src.size == 12 and np.all(dst >= 0)


def test_auto_picks_flat_for_small_sets_and_the_measured_winner_above():
    assert knn_mod.resolve_index(1000, "auto", gpu=False) == "flat"
    # bench/results/knn_compare.md: the fastest CPU index keeping >= 99 % of the cos >= 0.5 edges
    # a caller reading only strong edges (Infomap at 0.5) gets hnsw-join at every size above exact search
    for n in (knn_mod.AUTO_FLAT_MAX + 1, 1_000_000):
        assert knn_mod.resolve_index(n, "auto", gpu=False, min_sim=0.5) == "hnsw-join"
    # one reading whole lists (GCN-D, neighbour overlaps) keeps a full search
    assert knn_mod.resolve_index(knn_mod.AUTO_FLAT_MAX + 1, "auto", gpu=False) == "hnsw"
    big = "nndescent" if knn_mod._has_pynndescent() else "hnsw"
    assert knn_mod.resolve_index(knn_mod.AUTO_NNDESCENT_MIN + 1, "auto", gpu=False) == big
    # a GPU worker searches exactly while that stays cheap, IVF beyond
    assert knn_mod.resolve_index(1_000_000, "auto", gpu=True) == "flat"
    assert knn_mod.resolve_index(knn_mod.AUTO_GPU_FLAT_MAX + 1, "auto", gpu=True) == "ivf"


def test_hnsw_settings_are_the_measured_ones():
    p = knn_mod._index_params(100_000, "hnsw", 30, None, None)
    assert (p["M"], p["efConstruction"]) == (knn_mod.HNSW_BUILD["M"], knn_mod.HNSW_BUILD["efConstruction"])
    assert p["efSearch"] >= max(knn_mod.HNSW_EF_SEARCH, 4 * 30)
    small, big = (knn_mod._index_params(n, "hnsw-join", 30, None, None) for n in (100_000, 1_000_000))
    assert small["few"] == 1 and big["few"] == 2  # larger sets also search rows with one strong neighbour
    assert small["efSearch"] == knn_mod.HNSW_JOIN["efSearch"] and small["build_dims"] == 64
    ivf = knn_mod._index_params(1_000_000, "ivf", 30, None, None)
    assert ivf["nlist"] == 4000 and ivf["nprobe"] == round(knn_mod.IVF_PROBE_SHARE * 4000)


def test_cache_hit_miss_and_atomic(tmp_path, monkeypatch):
    x = clustered(300)
    g1 = build_knn(x, 5, "flat", cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("knn_") and files[0].suffix == ".npz"

    def boom(*a, **k):
        raise AssertionError("index rebuilt despite cache")

    monkeypatch.setattr(knn_mod, "_make_index", boom)
    g2 = build_knn(x, 5, "flat", cache_dir=tmp_path)
    np.testing.assert_array_equal(g1.indices, g2.indices)
    monkeypatch.undo()
    build_knn(x, 6, "flat", cache_dir=tmp_path)  # other k -> other file
    y = x.copy()
    y[[0, 1]] = y[[1, 0]]
    build_knn(y, 5, "flat", cache_dir=tmp_path)  # other features -> other file
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 3 and not any(n.endswith(".tmp") for n in names)


def test_corrupt_cache_is_rebuilt(tmp_path):
    x = clustered(100)
    build_knn(x, 5, "flat", cache_dir=tmp_path)
    (f,) = tmp_path.iterdir()
    f.write_bytes(b"not an npz")
    g = build_knn(x, 5, "flat", cache_dir=tmp_path)
    assert g.indices.shape == (100, 5)


def test_to_csr_and_symmetric():
    x = clustered(200)
    g = build_knn(x, 5, "flat")
    m = g.to_csr()
    assert m.shape == (200, 200) and m.nnz == 1000
    assert m[0, g.indices[0, 0]] == pytest.approx(g.sims[0, 0])
    ms = g.to_csr(symmetric=True)
    assert abs(ms - ms.T).max() == 0
    assert g.to_csr(min_sim=0.99).nnz < m.nnz


def test_save_load_roundtrip(tmp_path):
    g = build_knn(clustered(50), 4, "flat")
    g.save(tmp_path / "g.npz")
    h = KnnGraph.load(tmp_path / "g.npz")
    np.testing.assert_array_equal(g.indices, h.indices)
    assert h.index_kind == "flat"
    with pytest.raises(FileNotFoundError):
        KnnGraph.load(tmp_path / "missing.npz")


@pytest.mark.parametrize(
    "x, k, index, match",
    [
        (np.ones((3, 4), np.float32), 2, "flat", "L2-normalised"),
        (l2_normalize(np.ones((3, 4))), 0, "flat", "positive integer"),
        (l2_normalize(np.ones((3, 4))), 2, "annoy", "index must be one of"),
        (np.zeros((0, 4), np.float32), 2, "flat", "non-empty"),
    ],
)
def test_bad_inputs_raise(x, k, index, match):
    with pytest.raises(ValueError, match=match):
        build_knn(x, k, index)


def test_real_faces_neighbours_share_identity(shared_data):
    from tests.conftest import reference_features

    fs = reference_features("glint")
    ids, _ = fs.label_ids()
    g = build_knn(fs.embeddings, 5, "flat")
    same = ids[g.indices[:, 0]] == ids
    assert same.mean() > 0.95
