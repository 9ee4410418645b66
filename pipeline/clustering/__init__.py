"""Step 4 of the paper: cluster the disjoint faces.

| module | what |
| --- | --- |
| ``knn`` | the cosine kNN graph (faiss flat, IVF or HNSW; ``build_knn``) |
| ``proposals`` | super-vertex proposals for GCN-D (``generate_proposals``) |
| ``gcn`` | GCN-D: train, predict, de-overlap (``train_gcn``, ``predict``, ``deoverlap``) |
| ``methods`` | every clustering method behind one entry point (``cluster``: gcnd, infomap, hac, dbscan, kmeans) |
| ``metrics`` | pairwise and BCubed precision/recall/F, NMI (``evaluate_clustering``) |
"""
from pipeline._lazy import lazy_exports

__all__ = ["build_knn", "generate_proposals", "train_gcn", "predict", "deoverlap", "cluster",
           "evaluate_clustering", "pairwise_prf", "bcubed_prf"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "build_knn": "knn", "generate_proposals": "proposals", "train_gcn": "gcn", "predict": "gcn",
    "deoverlap": "gcn", "cluster": "methods", "evaluate_clustering": "metrics", "pairwise_prf": "metrics",
    "bcubed_prf": "metrics",
})
