"""Command line: ``knn``, ``train-gcn``, ``cluster``, ``evaluate-clustering``.

    python -m pipeline knn FEATURES.npz --k 30 --out graph.npz
    python -m pipeline train-gcn LABELED.npz --out gcnd.pt --epochs 40
    python -m pipeline cluster FEATURES.npz --out labels.npz [--method infomap] [--model gcnd.pt] [--param threshold=0.5]
    python -m pipeline evaluate-clustering LABELED.npz labels.npz [--json metrics.json]
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.progress import TqdmProgress


def _parse_value(text: str):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _params(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--param must look like name=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return out


def cmd_knn(args) -> int:
    from pipeline.features import load_features
    from pipeline.clustering.knn import build_knn

    fs = load_features(args.features)
    bar = TqdmProgress()
    graph = build_knn(fs.embeddings, args.k, args.index, args.cache_dir, threads=args.threads, progress=bar)
    bar.close()
    if args.out:
        graph.save(args.out)
        print(f"kNN graph ({graph.index_kind}, N={graph.n}, k={graph.k}) -> {args.out}")
    return 0


def cmd_train_gcn(args) -> int:
    from pipeline.features import load_features
    from pipeline.clustering.gcn import GcnConfig, train_gcn
    from pipeline.clustering.proposals import ProposalConfig

    fs = load_features(args.features)
    if fs.labels is None:
        raise ValueError(f"{args.features} has no labels: GCN-D trains on labeled faces")
    cfg = GcnConfig(
        in_dim=fs.dim,
        k=args.k,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        proposals=ProposalConfig(thresholds=args.thresholds, max_size=args.max_size, levels=args.levels),
    )
    bar = TqdmProgress()
    model = train_gcn(fs.embeddings, fs.labels, cfg, progress=bar)
    bar.close()
    model.save(args.out)
    print(f"GCN-D checkpoint -> {args.out}")
    return 0


def cmd_cluster(args) -> int:
    from pipeline.clustering.methods import cluster
    from pipeline.features import load_features, save_labels
    from pipeline.clustering.knn import KnnGraph

    fs = load_features(args.features)
    params = _params(args.param)
    if args.model:
        params["model"] = args.model
    if args.graph:
        params["graph"] = KnnGraph.load(args.graph)
    if args.cache_dir:
        params["cache_dir"] = args.cache_dir
    bar = TqdmProgress()
    labels = cluster(fs.embeddings, args.method, progress=bar, **params)
    bar.close()
    save_labels(args.out, labels, paths=fs.paths)
    sizes = np.bincount(labels)
    print(f"{args.method}: {len(labels)} faces -> {sizes.size} clusters ({int((sizes == 1).sum())} singletons) -> {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from pipeline.clustering.metrics import evaluate_clustering
    from pipeline.features import load_features, load_labels

    fs = load_features(args.features)
    if fs.labels is None:
        raise ValueError(f"{args.features} has no labels to evaluate against")
    pred = load_labels(args.labels)
    if pred.shape[0] != len(fs):
        raise ValueError(f"{args.labels} has {pred.shape[0]} labels for {len(fs)} faces")
    result = evaluate_clustering(fs.labels, pred)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


def register(subparsers) -> None:
    from pipeline.clustering.methods import DEFAULT_METHOD, METHODS
    from pipeline.clustering.knn import INDEX_KINDS

    p = subparsers.add_parser("knn", help="build the kNN graph of a feature file (faiss)")
    p.add_argument("features", help="feature .npz")
    p.add_argument("--k", type=int, default=30, help="neighbours per face (default 30)")
    p.add_argument("--index", choices=INDEX_KINDS, default="auto", help="faiss index kind (default auto)")
    p.add_argument("--out", help="write the graph here (.npz: indices, sims)")
    p.add_argument("--cache-dir", help="cache graphs here by (features, k, index)")
    p.add_argument("--threads", type=int, default=None, help="faiss OpenMP threads")
    p.set_defaults(func=cmd_knn)

    p = subparsers.add_parser("train-gcn", help="train GCN-D on a labeled feature file")
    p.add_argument("features", help="labeled feature .npz")
    p.add_argument("--out", required=True, help="checkpoint path (.pt)")
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.35, 0.45, 0.55],
                   help="proposal similarity thresholds")
    p.add_argument("--max-size", type=int, default=300, help="largest proposal (faces)")
    p.add_argument("--levels", type=int, choices=(1, 2), default=2)
    p.set_defaults(func=cmd_train_gcn)

    p = subparsers.add_parser("cluster", help="cluster a feature file into pseudo-identities")
    p.add_argument("features", help="feature .npz")
    p.add_argument("--out", required=True, help="labels .npz (int64 'labels' aligned with the rows)")
    p.add_argument("--method", choices=sorted(METHODS), default=DEFAULT_METHOD,
                   help=f"clustering method (default {DEFAULT_METHOD})")
    p.add_argument("--model", help="GCN-D checkpoint (method gcn-d)")
    p.add_argument("--graph", help="a prebuilt kNN graph .npz (from `knn --out`)")
    p.add_argument("--cache-dir", help="kNN cache folder")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="method setting, e.g. --param threshold=0.5 (repeatable)")
    p.set_defaults(func=cmd_cluster)

    p = subparsers.add_parser("evaluate-clustering", help="pairwise/BCubed P/R/F and NMI against true labels")
    p.add_argument("features", help="labeled feature .npz (the truth)")
    p.add_argument("labels", help="predicted labels .npz")
    p.add_argument("--json", help="also write the metrics here")
    p.set_defaults(func=cmd_evaluate)
