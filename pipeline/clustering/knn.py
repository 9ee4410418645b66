"""k-nearest-neighbour graph of L2-normalised face features (cosine similarity = inner product).

``build_knn(emb, k)`` returns a :class:`KnnGraph`: for each row its ``k`` nearest other rows
(``indices`` (N, k) int64, ``sims`` (N, k) float32, best first; a row never lists itself, and
``-1`` / ``-inf`` pad rows that have fewer than ``k`` neighbours).

Index kinds (faiss):
- ``flat``: exact ``IndexFlatIP``, brute force, N^2 d flops.
- ``ivf``: ``IndexIVFFlat`` with ``nlist ~ 4 sqrt(N)`` inverted lists, a share (:data:`IVF_PROBE_SHARE`) of
  them searched.
- ``hnsw``: ``IndexHNSWFlat`` with a lighter graph (M, efConstruction: :data:`HNSW_BUILD`) and a wider
  search (efSearch: :data:`HNSW_EF_SEARCH`, at least 4k): build cost grows with M x efConstruction, and
  the wider search buys back the recall the lighter graph loses, for less CPU.
- ``hnsw-join``: a light HNSW build whose level-0 links seed a local join through strong edges, and an HNSW
  search only for rows the join left without a strong neighbour (:mod:`pipeline.clustering.knn_join`,
  settings :data:`HNSW_JOIN`).
- ``nndescent``: pynndescent's NN-descent, which builds the whole kNN graph directly (optional package;
  numba compiles it on first use in a process).
- ``auto``: on the CPU ``flat`` up to :data:`AUTO_FLAT_MAX` rows; above, for a caller that reads only edges at
  least as similar as ``HNSW_JOIN["strong"]`` (``min_sim``: Infomap, connected components and DBSCAN at their
  thresholds) ``hnsw-join``, whose weak neighbours are only what its steps met; for one that reads whole lists
  (GCN-D, the neighbour-overlap methods) ``hnsw`` up to :data:`AUTO_NNDESCENT_MIN` and ``nndescent`` above
  (``hnsw`` where pynndescent is absent); on a GPU (faiss-gpu seeing one) exact ``flat`` up to
  :data:`AUTO_GPU_FLAT_MAX` rows, ``ivf`` above.
  Chosen by bench/knn_compare.py (results in bench/results/knn_compare*.md): faiss IVF with lists and
  probes scaled to N, with and without an SQ8 + refine step, faiss HNSW at several settings, usearch
  (f32, i8) and pynndescent's NN-descent on the same synthetic 100k; the fastest that keeps >= 99 % of
  the cos >= 0.5 edges is ``auto``'s.
A GPU is used automatically for flat and ivf when faiss was built with GPU support and sees one.

With ``cache_dir`` the graph is stored as ``knn_<hash>.npz``, the hash taken over the feature
bytes, ``k`` and the index kind (and its parameters); writes are atomic.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from pipeline.progress import Progress
from pipeline.features import atomic_save_npz, check_embeddings

log = logging.getLogger(__name__)

INDEX_KINDS = ("auto", "flat", "ivf", "hnsw", "hnsw-join", "nndescent")
# Above this many rows ``auto`` leaves exact search (measured: bench/clustering_speed.py).
AUTO_FLAT_MAX = 20_000
# On a GPU exact search stays cheap far longer (2 N^2 d flops: 1M rows is 2.6e14, seconds on one card).
AUTO_GPU_FLAT_MAX = 2_000_000
# bench/results/knn_compare_cpu.md (synthetic 100k, k=30): M16 efC80 efS128 found 99.87 % of the cos >= 0.5
# edges in 65 CPU s; main's M32 efC80 efS64 99.96 % in 78; M16 efC40 efS256 99.27 % in 79.
HNSW_BUILD = {"M": 16, "efConstruction": 80}
HNSW_EF_SEARCH = 128
# ``hnsw-join`` (pipeline/clustering/knn_join.py), chosen on synthetic faces of another seed than the benchmark's
# (seed 7; bench/results/labels_scale.md uses seed 0), share of the cos >= 0.5 edges found and wall seconds:
# - 100k: a 64-d build M32 efC32 99.94 % in about 4.3 s; the full 128-d M24 efC32 99.88 % in 5.4 s; 48-d 99.69 %
#   in 3.8 s; the full HNSW search above (M16 efC80 efS128) about 16 s;
# - 1M: the same build, searching the rows left alone (no strong neighbour) at efSearch 128 / 256: 97.1 % in 112 s /
#   98.3 % in 140 s, where pynndescent (``nndescent``) found 96.0 % in 114-128 s (seed 0). Most misses left were
#   people split in two groups the join never bridged, so above HNSW_JOIN_FEW_ABOVE rows a row with fewer than 2
#   strong neighbours is searched too: 99.0 % in 130 s at efSearch 160, 99.3 % in 158 s at 256; 200 between.
#   At 100k that adds about 1 s for 0.03 points (99.94 -> 99.97 %), so there only rows left alone are searched.
#   A lighter build at 100k (efConstruction 24: 99.57 % in about 4.3 s on seed 7) was tried and taken back: on the
#   benchmark's seed-0 set it searched more rows and took 8.8 s at 99.41 % (bench/labels_scale.py at commit 07ad94f,
#   not committed as a results file); that reported number is what decided it.
# ``floor``: edges the join walks through; ``strong``: a row with fewer than ``few`` neighbours this close is searched.
HNSW_JOIN = {"M": 32, "efConstruction": 32, "build_dims": 64, "efSearch": 200, "floor": 0.4, "strong": 0.5, "few": 1}
HNSW_JOIN_FEW_ABOVE = 200_000
# bench/results/knn_compare_cpu.md: pynndescent's NN-descent found 99.88 % in 22 CPU s, a third of HNSW's, but
# numba compiles it once per process (82-170 s of wall clock on the loaded machine): worth it above this many rows.
AUTO_NNDESCENT_MIN = 200_000
#: NN-descent's candidate pool and early-stop threshold (pynndescent's defaults: min(60, k) and 0.001): on synthetic
#: faces the share of strong (cos >= 0.5) edges found rose from 99.07 to 99.45 % at 300k and from 95.0 to
#: 96.3 % at 1M for about 10 % more time (bench/results/labels_scale.md); 1M is still short of 99 %.
NNDESCENT = {"max_candidates": 60, "delta": 0.0001}
IVF_PROBE_SHARE = 0.10
CACHE_VERSION = 2



@dataclass
class KnnGraph:
    indices: np.ndarray  # (N, k) int64, -1 where missing
    sims: np.ndarray  # (N, k) float32, descending per row, -inf where missing
    index_kind: str = "flat"

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices)
        self.sims = np.asarray(self.sims)
        if self.indices.ndim != 2 or self.indices.shape != self.sims.shape:
            raise ValueError(
                f"indices and sims must be (N, k) arrays of one shape, got {self.indices.shape} and {self.sims.shape}"
            )
        if not np.issubdtype(self.indices.dtype, np.integer):
            raise ValueError(f"indices must be integers, got {self.indices.dtype}")
        self.indices = self.indices.astype(np.int64, copy=False)
        self.sims = self.sims.astype(np.float32, copy=False)

    @property
    def n(self) -> int:
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def edges(self, min_sim: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Directed edges (src, dst, sim) of valid neighbours with sim >= min_sim."""
        mask = self.indices >= 0
        if min_sim is not None:
            mask &= self.sims >= min_sim
        src = np.broadcast_to(np.arange(self.n, dtype=np.int64)[:, None], self.indices.shape)[mask]
        return src, self.indices[mask], self.sims[mask]

    def to_csr(self, min_sim: float | None = None, *, symmetric: bool = False) -> sp.csr_matrix:
        """(N, N) CSR matrix of similarities; ``symmetric`` keeps the max of (i, j) and (j, i)."""
        src, dst, w = self.edges(min_sim)
        m = sp.csr_matrix((w, (src, dst)), shape=(self.n, self.n), dtype=np.float32)
        if symmetric:
            m = m.maximum(m.T).tocsr()
        return m

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_save_npz(path, indices=self.indices, sims=self.sims, index_kind=np.array(self.index_kind))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "KnnGraph":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no kNN graph at {path}")
        with np.load(path, allow_pickle=False) as data:
            if "indices" not in data.files or "sims" not in data.files:
                raise ValueError(f"{path} is not a kNN graph file (needs 'indices' and 'sims')")
            kind = str(data["index_kind"]) if "index_kind" in data.files else "flat"
            return cls(data["indices"], data["sims"], kind)


def resolve_index(n: int, index: str, *, gpu: bool | None = None, min_sim: float | None = None) -> str:
    """The index kind ``build_knn`` uses for ``n`` rows (``gpu``: None asks faiss whether it sees one;
    ``min_sim``: the caller reads only edges at least this similar, None: whole lists)."""
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
    if index != "auto":
        return index
    if gpu is None:
        try:
            import faiss

            gpu = _gpu_available(faiss)
        except ImportError:  # pragma: no cover - faiss is a dependency
            gpu = False
    if gpu:
        return "flat" if n <= AUTO_GPU_FLAT_MAX else "ivf"
    if n <= AUTO_FLAT_MAX:
        return "flat"
    if min_sim is not None and min_sim >= HNSW_JOIN["strong"]:
        return "hnsw-join"
    return "nndescent" if n > AUTO_NNDESCENT_MIN and _has_pynndescent() else "hnsw"


def _has_pynndescent() -> bool:
    import importlib.util

    return importlib.util.find_spec("pynndescent") is not None


def _index_params(n: int, kind: str, k: int, nprobe: int | None, ef_search: int | None) -> dict:
    if kind == "ivf":
        nlist = int(max(1, min(n // 39, round(4 * math.sqrt(n)))))
        return {"nlist": nlist, "nprobe": int(nprobe or max(1, round(IVF_PROBE_SHARE * nlist)))}
    if kind == "hnsw":
        return {**HNSW_BUILD, "efSearch": int(ef_search or max(HNSW_EF_SEARCH, 4 * k))}
    if kind == "hnsw-join":
        return {**HNSW_JOIN, "efSearch": int(ef_search or max(HNSW_JOIN["efSearch"], 4 * k)),
                "few": 2 if n > HNSW_JOIN_FEW_ABOVE else HNSW_JOIN["few"]}
    if kind == "nndescent":
        return {"seed": 0}
    return {}


def cache_key(emb: np.ndarray, k: int, kind: str, params: dict) -> str:
    h = hashlib.sha1()
    h.update(f"v{CACHE_VERSION}|{emb.shape}|{emb.dtype}|k={k}|{kind}|{sorted(params.items())}".encode())
    h.update(memoryview(np.ascontiguousarray(emb)).cast("B"))
    return h.hexdigest()[:20]


def _gpu_available(faiss) -> bool:
    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:  # pragma: no cover - depends on the faiss build
        return False


def _make_index(faiss, emb: np.ndarray, kind: str, params: dict):
    d = emb.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, params["nlist"], faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        n_train = min(emb.shape[0], params["nlist"] * 64)
        sample = emb[np.sort(rng.choice(emb.shape[0], n_train, replace=False))] if n_train < emb.shape[0] else emb
        index.cp.min_points_per_centroid = 1
        index.train(sample)
        index.nprobe = params["nprobe"]
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, params["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["efConstruction"]
        index.hnsw.efSearch = params["efSearch"]
    else:  # pragma: no cover - resolve_index guards this
        raise ValueError(kind)
    if kind in ("flat", "ivf") and _gpu_available(faiss):
        log.info("kNN on GPU (faiss-gpu)")
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def _nndescent(emb: np.ndarray, kk: int, params: dict, threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The whole kNN graph at once by NN-descent (pynndescent): (N, kk) ids and inner products, best first."""
    from pynndescent import NNDescent

    nn = NNDescent(emb, metric="dot", n_neighbors=kk, random_state=params.get("seed", 0),
                   n_jobs=int(threads) if threads else -1, low_memory=True, compressed=True,
                   max_candidates=NNDESCENT["max_candidates"], delta=NNDESCENT["delta"])
    idx, dist = nn.neighbor_graph
    sims = (1.0 - dist).astype(np.float32)  # pynndescent's "dot" distance is 1 - x.y
    idx = idx.astype(np.int64)
    sims[idx < 0] = -np.inf
    return idx, sims


def _hnsw_join(emb: np.ndarray, k: int, params: dict, threads: int | None, progress) -> tuple[np.ndarray, np.ndarray]:
    import numba

    from pipeline.clustering.knn_join import hnsw_join

    before = numba.get_num_threads()
    if threads:
        numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
    try:
        idx, sims, info = hnsw_join(emb, k, M=params["M"], ef_construction=params["efConstruction"],
                                    ef_search=params["efSearch"], build_dims=params["build_dims"],
                                    floor=params["floor"], strong=params["strong"], few=params["few"],
                                    progress=progress)
    finally:
        numba.set_num_threads(before)
    log.info("hnsw-join: %d join rounds, %d rows searched again", info["join_rounds"], info["searched"])
    return idx, sims


def _drop_self(idx: np.ndarray, sims: np.ndarray, k: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own id from k+1 results, keep the best k (stable)."""
    rows = np.arange(offset, offset + idx.shape[0], dtype=np.int64)[:, None]
    is_self = idx == rows
    # stable sort puts self (True) after every other entry, order otherwise unchanged
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    idx = np.take_along_axis(idx, order, axis=1)
    sims = np.take_along_axis(sims, order, axis=1)
    idx = np.where(idx == rows, -1, idx)  # self kept only when fewer than k others exist
    sims = np.where(idx < 0, -np.inf, sims).astype(np.float32)
    return idx, sims


def build_knn(
    embeddings: np.ndarray,
    k: int,
    index: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    *,
    nprobe: int | None = None,
    ef_search: int | None = None,
    batch_size: int = 16384,
    threads: int | None = None,
    progress: Progress | None = None,
    min_sim: float | None = None,
) -> KnnGraph:
    """The ``k`` nearest other rows of every row of ``embeddings`` by inner product."""
    import faiss

    emb = check_embeddings(embeddings)
    n = emb.shape[0]
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    kind = resolve_index(n, index, min_sim=min_sim)
    params = _index_params(n, kind, k, nprobe, ef_search)
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"knn_{cache_key(emb, k, kind, params)}.npz"
        if cache_path.is_file():
            try:
                graph = KnnGraph.load(cache_path)
                if graph.indices.shape == (n, k):
                    log.info("kNN graph from cache %s", cache_path)
                    return graph
            except (ValueError, OSError):  # corrupt cache: rebuild
                log.warning("ignoring unreadable kNN cache %s", cache_path)
    if threads is not None:
        faiss.omp_set_num_threads(int(threads))
    t0 = time.perf_counter()
    idx_out = np.full((n, k), -1, dtype=np.int64)
    sim_out = np.full((n, k), -np.inf, dtype=np.float32)
    kk = min(k + 1, n)
    if kind in ("nndescent", "hnsw-join"):
        if kind == "nndescent":
            idx, sims = _nndescent(emb, kk, params, threads)
            idx, sims = _drop_self(idx, sims, min(k, kk), 0)
        else:
            idx, sims = _hnsw_join(emb, min(k, n - 1), params, threads, progress)
        idx_out[:, : idx.shape[1]], sim_out[:, : idx.shape[1]] = idx, sims
        if progress:
            progress(n, n, stage="knn")
        graph = KnnGraph(idx_out, sim_out, kind)
        log.info("kNN (%s, N=%d, k=%d) built in %.1f s", kind, n, k, time.perf_counter() - t0)
        if cache_path is not None:
            graph.save(cache_path)
        return graph
    index_obj = _make_index(faiss, emb, kind, params)
    if kind == "hnsw":
        for start in range(0, n, batch_size):
            index_obj.add(emb[start : start + batch_size])
            if progress:
                progress(min(start + batch_size, n), 2 * n, stage="knn-add")
    else:
        index_obj.add(emb)
    done = 0
    for start in range(0, n, batch_size):
        q = emb[start : start + batch_size]
        s, i = index_obj.search(q, kk)
        i, s = _drop_self(i.astype(np.int64), s, min(k, kk), start)
        idx_out[start : start + q.shape[0], : i.shape[1]] = i
        sim_out[start : start + q.shape[0], : i.shape[1]] = s
        done += q.shape[0]
        if progress:
            progress(done + (n if kind == "hnsw" else 0), 2 * n if kind == "hnsw" else n, stage="knn")
    graph = KnnGraph(idx_out, sim_out, kind)
    log.info("kNN (%s, N=%d, k=%d) built in %.1f s", kind, n, k, time.perf_counter() - t0)
    if cache_path is not None:
        graph.save(cache_path)
    return graph
