"""One entry point for face clustering: ``cluster(embeddings, method, **params) -> labels``.

Every method returns (N,) int64 labels 0..C-1 aligned with the input rows; faces a method leaves
unclustered (DBSCAN noise, faces with no strong edge) get a singleton label of their own.

Methods (defaults are the settings chosen on the LFW training half, see
bench/results/clustering_quality.md; similarities are cosine, features L2-normalised):

- ``infomap``: Infomap community detection (two-level map equation) on the kNN graph, undirected,
  edges with similarity >= ``threshold`` weighted by similarity.
- ``gcn-d``: the paper's method: proposals + GCN-D quality (IoU) + de-overlap. Needs ``model``
  (a :class:`pipeline.clustering.gcn.GcnModel` or a checkpoint path).
- ``cc``: connected components of the kNN graph at ``threshold`` (the simplest graph baseline).
- ``hac``: average-linkage agglomerative clustering (fastcluster) on cosine distance, cut at
  ``distance``. Needs the N^2/2 distance matrix: refused above ``max_n`` faces.
- ``dbscan``: scikit-learn DBSCAN, Euclidean distance on the unit features, ``eps`` and
  ``min_samples=2``; distances come from the kNN graph (neighbours beyond the k-th are ignored).
- ``kmeans``: MiniBatchKMeans with ``n_clusters`` (default ``round(N / faces_per_cluster)``).
- ``infomap-recall``, ``fces``, ``infomap-attach``, ``density-peak``: recall fixes for hard (low-resolution)
  faces, issue 16 (pipeline/clustering/recall.py, neighbour_edges.py, diffusion.py); compared with Infomap in
  bench/results/clustering_recall_hard.md. The defaults of ``fces``, ``infomap-attach`` and ``density-peak`` are
  the settings chosen there on the low-resolution LFW train splits (one setting for 20 and 16 px); on clean
  faces they lose to ``infomap`` at 0.5 (same file), so none is the default method.
- ``infomap-wccn``: Infomap, then Infomap again on the same kNN pairs scored in features whitened by the first
  pass's own clusters (pipeline/clustering/wccn.py). It wins on both F and precision on every low-resolution
  held-out set and on glint, but loses precision on clean all-LFW (bench/results/clustering_wccn.md), so it is
  not the default either.

Paper settings at MS-Celeb scale were K=5000 (k-means), distance 0.85 (HAC), eps 0.8 (DBSCAN);
ours are tuned to SFace features and the LFW/glint scale.
"""
from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from pipeline.features import check_embeddings
from pipeline.clustering.infomap_edges import infomap_on_edges
from pipeline.clustering.diffusion import cluster_density_peak
from pipeline.clustering.knn import KnnGraph, build_knn
from pipeline.clustering.neighbour_edges import cluster_fces, cluster_infomap_attach
from pipeline.clustering.recall import cluster_infomap_recall
from pipeline.clustering.wccn import cluster_infomap_wccn

log = logging.getLogger(__name__)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Contiguous int64 labels 0..C-1 in order of first appearance; negative labels -> singletons."""
    labels = np.asarray(labels).astype(np.int64).copy()
    neg = labels < 0
    if neg.any():
        start = labels.max() + 1 if (~neg).any() else 0
        labels[neg] = start + np.arange(int(neg.sum()), dtype=np.int64)
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inv.ravel()]


def _graph(emb: np.ndarray, k: int, graph: KnnGraph | None, index: str, cache_dir, progress,
           min_sim: float | None = None) -> KnnGraph:
    """The given graph, or a new one; ``min_sim``: the method reads only edges this similar (``auto`` may then
    build the cheaper strong-edge graph, see knn.resolve_index)."""
    if graph is not None:
        if graph.n != emb.shape[0]:
            raise ValueError(f"kNN graph has {graph.n} rows, embeddings have {emb.shape[0]}")
        return graph
    return build_knn(emb, max(1, min(k, emb.shape[0] - 1)), index, cache_dir, progress=progress,
                     min_sim=min_sim)


def cluster_cc(emb, *, threshold: float = 0.55, k: int = 30, graph=None, index="auto", cache_dir=None, progress=None):
    g = _graph(emb, k, graph, index, cache_dir, progress, min_sim=threshold)
    adj = g.to_csr(threshold)
    _, lab = connected_components(adj, directed=True, connection="weak")
    return lab


def cluster_infomap(
    emb,
    *,
    threshold: float = 0.5,
    k: int = 30,
    num_trials: int = 1,
    seed: int = 1,
    graph=None,
    index="auto",
    cache_dir=None,
    progress=None,
):
    g = _graph(emb, k, graph, index, cache_dir, progress, min_sim=threshold)
    src, dst, w = g.edges(threshold)
    return infomap_on_edges(g.n, src, dst, w, num_trials=num_trials, seed=seed, progress=progress)


def cluster_gcnd(
    emb,
    *,
    model: Any = None,
    k: int | None = None,
    min_score: float = 0.4,
    score: str = "iou*iop",
    graph=None,
    index: str | None = None,
    cache_dir=None,
    max_nodes: int = 200_000,
    progress=None,
    timings: dict | None = None,
):
    from pipeline.clustering.gcn import GcnModel, deoverlap, predict
    from pipeline.clustering.proposals import generate_proposals

    if model is None:
        raise ValueError("method 'gcn-d' needs a trained model: pass model=<checkpoint path> (python -m pipeline train-gcn)")
    if isinstance(model, (str, Path)):
        model = GcnModel.load(model)
    if score not in ("iou", "iop", "iou*iop"):
        raise ValueError(f"score must be 'iou', 'iop' or 'iou*iop', got {score!r}")
    cfg = model.config
    t = {} if timings is None else timings
    t0 = time.perf_counter()
    g = _graph(emb, k or cfg.k, graph, index or cfg.index, cache_dir, progress)
    t["knn"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    props = generate_proposals(g, cfg.proposals, emb, progress=progress)
    t["proposals"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    iou, iop = predict(model, emb, g, props, max_nodes=max_nodes, progress=progress)
    t["gcn"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = {"iou": iou, "iop": iop, "iou*iop": iou * iop}[score]
    labels = deoverlap(props, s, emb.shape[0], min_score)
    t["deoverlap"] = time.perf_counter() - t0
    t["proposal_count"] = len(props)
    return labels


def cluster_hac(emb, *, distance: float = 0.55, max_n: int = 30_000, block: int = 2048, progress=None):
    import fastcluster
    from scipy.cluster.hierarchy import fcluster

    n = emb.shape[0]
    if n > max_n:
        raise ValueError(f"HAC needs an N^2/2 distance matrix: {n} faces is above max_n={max_n}")
    if n == 1:
        return np.zeros(1, np.int64)
    cond = np.empty(n * (n - 1) // 2, dtype=np.float64)
    pos = 0
    for a in range(0, n, block):
        s = emb[a : a + block] @ emb.T
        for i in range(a, min(a + block, n)):
            row = s[i - a, i + 1 :]
            cond[pos : pos + row.size] = 1.0 - row
            pos += row.size
        if progress:
            progress(min(a + block, n), n, stage="hac-distances")
    np.clip(cond, 0.0, 2.0, out=cond)
    z = fastcluster.linkage(cond, method="average", preserve_input=False)
    del cond
    return fcluster(z, t=distance, criterion="distance")


def cluster_dbscan(
    emb, *, eps: float = 0.95, min_samples: int = 2, k: int = 30, graph=None, index="auto", cache_dir=None, progress=None
):
    from sklearn.cluster import DBSCAN

    min_sim = 1.0 - eps * eps / 2.0  # ||a - b||^2 = 2 - 2 cos for unit vectors
    g = _graph(emb, k, graph, index, cache_dir, progress, min_sim=min_sim)
    src, dst, s = g.edges(min_sim)
    d = np.sqrt(np.clip(2.0 - 2.0 * s.astype(np.float64), 0.0, None))
    d = np.maximum(d, 1e-12)  # explicit zeros would be dropped from the sparse matrix
    m = sp.csr_matrix((d, (src, dst)), shape=(g.n, g.n))
    m = m.maximum(m.T).tocsr()
    return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(m)


def cluster_kmeans(
    emb, *, n_clusters: int | None = None, faces_per_cluster: float = 3.0, batch_size: int = 4096, seed: int = 0,
    max_iter: int = 30, progress=None,
):
    from sklearn.cluster import MiniBatchKMeans

    n = emb.shape[0]
    kc = int(n_clusters) if n_clusters else max(1, int(round(n / faces_per_cluster)))
    kc = min(kc, n)
    # k-means++ seeding costs O(N K d log K): measured 77 s against 10 s for random seeding at
    # N=6.6k, K=3.3k on this machine, with the same BCubed F; so random seeding for large K
    init = "k-means++" if kc <= 1000 else "random"
    km = MiniBatchKMeans(n_clusters=kc, batch_size=batch_size, random_state=seed, n_init=1, init=init,
                         max_iter=max_iter)
    return km.fit_predict(emb)


@dataclass(frozen=True)
class Method:
    func: Callable[..., np.ndarray]
    defaults: dict[str, Any] = field(default_factory=dict)
    doc: str = ""
    uses_knn: bool = False


METHODS: dict[str, Method] = {
    "infomap": Method(cluster_infomap, {"k": 30, "threshold": 0.5, "num_trials": 1}, "Infomap on the kNN graph", True),
    "gcn-d": Method(cluster_gcnd, {"model": None, "min_score": 0.4, "score": "iou*iop"}, "GCN-D (paper, Sec. 3.2)", True),
    "cc": Method(cluster_cc, {"k": 30, "threshold": 0.55}, "connected components at a threshold", True),
    "hac": Method(cluster_hac, {"distance": 0.55, "max_n": 30_000}, "average-link HAC (fastcluster)"),
    "dbscan": Method(cluster_dbscan, {"k": 30, "eps": 0.95, "min_samples": 2}, "DBSCAN on kNN distances", True),
    "kmeans": Method(cluster_kmeans, {"faces_per_cluster": 3.0}, "MiniBatch k-means"),
}


METHODS["infomap-recall"] = Method(
    cluster_infomap_recall, {"k": 30, "threshold": 0.5, "power": 0.0, "attach_sim": 0.5, "attach_margin": 0.1},
    "Infomap on shared-neighbour edge weights + singleton attachment (issue 16)", True)
METHODS["fces"] = Method(
    cluster_fces, {"k": 30, "threshold": 0.45, "tau": 0.5, "min_prob": 0.15, "early_stop": True, "weight": "prob*cos",
                   "attach_sim": None, "attach_margin": 0.05, "max_size": 2},
    "Infomap on neighbour-overlap edge probabilities with early stopping (FC-ES idea; issue 16)", True)
METHODS["infomap-attach"] = Method(
    cluster_infomap_attach, {"k": 30, "threshold": 0.5, "attach_sim": 0.0, "attach_margin": 0.05, "max_size": 2},
    "Infomap, then clusters of <= max_size faces join the clearly closest cluster (issue 16)", True)
METHODS["density-peak"] = Method(
    cluster_density_peak, {"k": 30, "tau": 0.3, "alpha": 0.0, "link_sim": 0.0, "threshold": 0.5},
    "density peaks on diffused density and transition-probability similarity (arXiv 2207.11895 idea; issue 16)", True)
METHODS["infomap-wccn"] = Method(
    cluster_infomap_wccn, {"k": 30, "threshold": 0.5, "shrink": 1.0, "num_trials": 1},
    "Infomap, then Infomap again on features whitened by its own clusters (issue 16)", True)
# Chosen by the measured quality table (bench/results/clustering_quality.md); the recall fixes
# (infomap-recall, bench/results/clustering_recall.md) do not beat it without losing precision; on low-resolution
# faces (bench/results/clustering_recall_hard.md) the fixes gain on some held-out sets, lose on glint at 20 px and
# lose 0.17-0.19 pairwise F on clean LFW.
DEFAULT_METHOD = "infomap"


def cluster(embeddings: np.ndarray, method: str = DEFAULT_METHOD, **params: Any) -> np.ndarray:
    """Cluster L2-normalised face features; returns (N,) int64 labels 0..C-1 aligned with the rows.

    ``params`` override the method's defaults (see :data:`METHODS`); kNN-based methods accept
    ``graph=`` (a prebuilt :class:`KnnGraph`), ``index=`` and ``cache_dir=``; every method accepts
    ``progress=``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; choose from {sorted(METHODS)}")
    emb = check_embeddings(embeddings)
    spec = METHODS[method]
    accepted = set(inspect.signature(spec.func).parameters) - {"emb"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"method {method!r} has no setting {', '.join(unknown)}; its settings: {', '.join(sorted(accepted))}")
    kwargs = {**spec.defaults, **params}  # an explicit None is a setting too (e.g. attach_sim=None: no attachment)
    t0 = time.perf_counter()
    labels = spec.func(emb, **kwargs)
    labels = relabel(labels)
    if labels.shape != (emb.shape[0],):  # pragma: no cover - a method bug
        raise RuntimeError(f"{method} returned labels of shape {labels.shape}")
    log.info("%s: %d faces -> %d clusters in %.1f s", method, emb.shape[0], labels.max() + 1, time.perf_counter() - t0)
    return labels
