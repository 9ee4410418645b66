"""Clustering quality on real faces (SFace features): every method, tuned on the LFW training half only.

Protocol
- LFW, all 13,233 faces (5,749 identities, 4,069 with one image): identities split in two halves
  at random (seed 0). The training half tunes every method's setting and trains GCN-D; the test half
  and glint-sample (1,402 aligned crops, 24 identities, another domain) are only clustered.
- Settings are chosen by the mean of pairwise F and BCubed F on the training half. GCN-D's own
  settings (proposal thresholds, score, min_score) are chosen by training on 2/3 of the training
  identities and scoring on the other 1/3; the final model is then trained on the whole training half.
- Seconds: one cluster() call from features to labels, kNN graph included, on this shared 2-core CPU.

    PYTHONPATH=. .venv/bin/python bench/clustering_quality.py
writes bench/results/clustering_quality.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.extract_reference_features import CACHE  # noqa: E402

from pipeline.clustering.methods import METHODS, cluster  # noqa: E402
from pipeline.clustering.metrics import evaluate_clustering  # noqa: E402
from pipeline.features import load_features  # noqa: E402
from pipeline.clustering.gcn import GcnConfig, train_gcn  # noqa: E402
from pipeline.clustering.knn import build_knn  # noqa: E402
from pipeline.clustering.proposals import ProposalConfig  # noqa: E402

FEATURES = CACHE / "features"  # honours FACECURATE_CACHE
RESULTS = ROOT / "bench" / "results"
K = 30

GRIDS = {
    "cc": [{"threshold": t} for t in np.round(np.arange(0.35, 0.76, 0.05), 2)],
    "infomap": [{"threshold": t} for t in np.round(np.arange(0.20, 0.61, 0.05), 2)],
    "dbscan": [{"eps": e} for e in np.round(np.arange(0.70, 1.16, 0.05), 2)],
    "hac": [{"distance": d} for d in np.round(np.arange(0.30, 0.86, 0.05), 2)],
    "kmeans": [{"faces_per_cluster": f} for f in (1.5, 2.0, 3.0)],
}
PAPER = {"hac": {"distance": 0.85}, "dbscan": {"eps": 0.8}}
GCN_THRESHOLDS = [(0.35, 0.45, 0.55), (0.45, 0.55, 0.65), (0.55, 0.65, 0.75)]
GCN_SCORES = [{"score": s, "min_score": m} for s in ("iou", "iou*iop") for m in (0.0, 0.2, 0.4)]


def objective(r: dict) -> float:
    return (r["pairwise_f"] + r["bcubed_f"]) / 2.0


def split_identities(ids: np.ndarray, frac: float, seed: int) -> np.ndarray:
    classes = np.unique(ids)
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(classes)[: int(round(frac * classes.size))]
    return np.isin(ids, chosen)


def rounded(r: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}


def run(args) -> dict:
    torch.set_num_threads(2)
    import faiss

    faiss.omp_set_num_threads(2)
    lfw = load_features(FEATURES / "lfw_sface.npz")
    glint = load_features(FEATURES / "glint_sface.npz")
    ids, _ = lfw.label_ids()
    train_mask = split_identities(ids, 0.5, args.seed)
    sets = {
        "train": (lfw.embeddings[train_mask], ids[train_mask]),
        "lfw-test": (lfw.embeddings[~train_mask], ids[~train_mask]),
        "glint": (glint.embeddings, glint.label_ids()[0]),
    }
    info = {
        name: {"faces": int(y.size), "identities": int(np.unique(y).size),
               "one_image_identities": int(np.sum(np.bincount(y) == 1))}
        for name, (_, y) in sets.items()
    }
    print(json.dumps(info))
    emb_tr, y_tr = sets["train"]
    g_tr = build_knn(emb_tr, K)
    tuning: dict[str, list] = {}
    chosen: dict[str, dict] = {}
    for method, grid in GRIDS.items():
        rows = []
        for params in grid:
            extra = {"graph": g_tr} if METHODS[method].uses_knn else {}
            t0 = time.perf_counter()
            lab = cluster(emb_tr, method, **params, **extra)
            r = evaluate_clustering(y_tr, lab)
            rows.append({"params": {k: float(v) for k, v in params.items()}, **rounded(r),
                         "seconds": round(time.perf_counter() - t0, 2)})
            print(method, params, round(r["pairwise_f"], 4), round(r["bcubed_f"], 4), flush=True)
        tuning[method] = rows
        best = max(rows, key=objective)
        chosen[method] = best["params"]

    # GCN-D: inner split of the training identities for its settings
    inner = split_identities(y_tr, 2 / 3, args.seed + 1)
    g_val = build_knn(emb_tr[~inner], K)
    gcn_rows = []
    for ths in GCN_THRESHOLDS:
        cfg = GcnConfig(in_dim=emb_tr.shape[1], k=K, epochs=args.epochs, proposals=ProposalConfig(thresholds=ths))
        model = train_gcn(emb_tr[inner], y_tr[inner], cfg)
        for sp in GCN_SCORES:
            lab = cluster(emb_tr[~inner], "gcn-d", model=model, graph=g_val, **sp)
            r = evaluate_clustering(y_tr[~inner], lab)
            gcn_rows.append({"params": {"thresholds": list(ths), **sp}, **rounded(r)})
            print("gcn-d", ths, sp, round(r["pairwise_f"], 4), round(r["bcubed_f"], 4), flush=True)
    tuning["gcn-d"] = gcn_rows
    best = max(gcn_rows, key=objective)["params"]
    chosen["gcn-d"] = best
    cfg = GcnConfig(in_dim=emb_tr.shape[1], k=K, epochs=args.epochs,
                    proposals=ProposalConfig(thresholds=best["thresholds"]))
    t0 = time.perf_counter()
    gcn_model = train_gcn(emb_tr, y_tr, cfg)
    gcn_train_s = time.perf_counter() - t0
    if args.save_model:
        gcn_model.save(args.save_model)

    # evaluation on held-out sets with the chosen settings (+ paper settings for HAC/DBSCAN)
    table = []
    runs = [(m, chosen[m], "tuned on LFW train half") for m in ["infomap", "gcn-d", "cc", "hac", "dbscan", "kmeans"]]
    runs += [(m, p, "paper setting") for m, p in PAPER.items()]
    for set_name in ("lfw-test", "glint", "train"):
        emb, y = sets[set_name]
        for method, params, note in runs:
            kw = dict(params)
            if method == "gcn-d":
                kw = {"model": gcn_model, "score": params["score"], "min_score": params["min_score"]}
            t0 = time.perf_counter()
            lab = cluster(emb, method, k=K, **kw) if METHODS[method].uses_knn else cluster(emb, method, **kw)
            sec = time.perf_counter() - t0
            r = evaluate_clustering(y, lab)
            row = {"set": set_name, "method": method, "setting": params, "note": note, **rounded(r),
                   "seconds": round(sec, 2)}
            table.append(row)
            print(set_name, method, params, round(r["pairwise_f"], 4), round(r["bcubed_f"], 4), round(sec, 2), flush=True)
    return {
        "command": "PYTHONPATH=. .venv/bin/python bench/clustering_quality.py",
        "features": "SFace 128-d (bench/extract_reference_features.py), .cache/features/{lfw,glint}_sface.npz",
        "k": K,
        "seed": args.seed,
        "sets": info,
        "selection_objective": "mean of pairwise F and BCubed F on the LFW training half",
        "chosen": chosen,
        "gcn_train_seconds": round(gcn_train_s, 1),
        "gcn_config": cfg.to_dict(),
        "table": table,
        "tuning": tuning,
        "machine": facts(torch_threads=torch.get_num_threads()),
    }


def facts(**extra) -> dict:
    from bench.harness import facts as machine_facts

    return machine_facts(**extra)


def make_notes(res: dict) -> list[str]:
    """Why DEFAULT_METHOD is what it is, from the measured table."""
    from pipeline.clustering.methods import DEFAULT_METHOD

    tuned = [r for r in res["table"] if r["note"].startswith("tuned")]
    lines = ["## Default method", ""]
    for set_name in ("lfw-test", "glint"):
        rows = sorted([r for r in tuned if r["set"] == set_name], key=lambda r: -r["pairwise_f"])
        lines.append(f"- {set_name}, by pairwise F: " + ", ".join(
            f"{r['method']} {r['pairwise_f']:.4f} (BCubed {r['bcubed_f']:.4f})" for r in rows) + ".")
    lines += [
        "",
        f"`DEFAULT_METHOD = \"{DEFAULT_METHOD}\"` (pipeline/cluster.py): Infomap on the k=30 kNN graph with edges of",
        "cosine >= 0.5 has the best pairwise and BCubed F on both held-out sets, needs no training, runs in",
        "about a second here and scales to 1M faces (bench/results/clustering_speed.md). Average-link HAC is",
        "as good on LFW but worse across domains (glint) and needs an N^2/2 distance matrix (refused above",
        "30k faces). GCN-D (the paper's method) stays available as `--method gcn-d --model <checkpoint>`.",
        "",
        "Known GCN-D weakness seen here: proposals are capped in size (300 faces at level 1, 1200 at",
        "level 2), so an identity with hundreds of photos is fragmented: on the training half George W Bush",
        "(530 images) ends up in pieces of at most 248 faces, and pairwise recall falls to 0.43 there (the",
        "test half has no identity that large). Infomap has no size cap. The paper's HAC/DBSCAN settings",
        "(distance 0.85, eps 0.8) were tuned for their features; on SFace they merge (HAC) or fragment",
        "(DBSCAN) badly, see the rows marked 'paper setting'.",
    ]
    return lines


def fmt_setting(s: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in s.items())


def write_md(res: dict, path: Path) -> None:
    lines = ["# Clustering quality on real faces", "",
             f"Command: `{res['command']}`  ", f"Features: {res['features']}; kNN k={res['k']}.  ",
             f"Machine: {res['machine']}.", "",
             "Sets: " + "; ".join(f"**{n}** {v['faces']} faces, {v['identities']} identities "
                                  f"({v['one_image_identities']} with one image)" for n, v in res["sets"].items()) + ".",
             "", "Every setting chosen on the LFW training half only "
             f"({res['selection_objective']}); GCN-D trained on the training half ({res['gcn_train_seconds']} s).", ""]
    for set_name, title in (("lfw-test", "LFW test half (held-out identities, all faces incl. one-image identities)"),
                            ("glint", "glint-sample (other domain, 24 identities)"),
                            ("train", "LFW training half (where settings were chosen; GCN-D trained here)")):
        lines += [f"## {title}", "", "| method | setting | pairwise P | pairwise R | pairwise F | BCubed F | NMI | clusters (true) | singletons (true) | seconds |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in [r for r in res["table"] if r["set"] == set_name]:
            lines.append(
                f"| {r['method']} | {fmt_setting(r['setting'])} ({r['note']}) | {r['pairwise_precision']:.4f} | "
                f"{r['pairwise_recall']:.4f} | **{r['pairwise_f']:.4f}** | {r['bcubed_f']:.4f} | {r['nmi']:.4f} | "
                f"{r['clusters']} ({r['true_clusters']}) | {r['singletons']} ({r['true_singletons']}) | {r['seconds']} |")
        lines.append("")
    lines += res.get("notes", [])
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--save-model", default=str(CACHE / "gcnd_lfw_train.pt"))
    ap.add_argument("--out", default=str(RESULTS / "clustering_quality"))
    ap.add_argument("--md-only", action="store_true", help="rewrite the .md (and notes) from the .json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    res = json.loads(out.with_suffix(".json").read_text()) if args.md_only else run(args)
    res["notes"] = make_notes(res)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    write_md(res, out.with_suffix(".md"))
    print("wrote", out.with_suffix(".json"), out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
