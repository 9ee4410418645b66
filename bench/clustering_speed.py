"""Clustering speed and memory at 100k and 1M faces on this machine (synthetic clustered unit vectors).

Every size runs in its own subprocess (its own peak RSS). Stages timed: kNN build (flat / IVF / HNSW
where affordable, with recall against exact search on 1,000 sample queries), GCN-D proposals, GCN-D
inference, de-overlap, and Infomap from the same kNN graph. The kNN step is compared with the
matrix-multiply bound N^2 d / (measured GFLOP/s of a float32 NumPy matmul).

    PYTHONPATH=. .venv/bin/python bench/clustering_speed.py [--sizes 100000 1000000]
writes bench/results/clustering_speed.{json,md}.

Synthetic data: identities with 1 + Geometric(0.1) faces each (mean 10), 128-d, face =
normalise(centre + 0.9 * g), g ~ N(0, I/128): cosine ~0.55 within an identity, ~0 +- 0.09 across.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.extract_reference_features import CACHE  # noqa: E402
RESULTS = ROOT / "bench" / "results"
DIM = 128
K = 30
STRONG = 0.5  # the Infomap edge threshold: recall of these edges is what clustering needs


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB on Linux


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = []
    total = 0
    while total < n:
        s = int(min(1 + rng.geometric(0.1) - 1, n - total)) or 1
        sizes.append(s)
        total += s
    labels = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    out = np.empty((n, DIM), np.float32)
    step = 100_000
    centres = rng.standard_normal((len(sizes), DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for a in range(0, n, step):
        x = centres[labels[a : a + step]] + 0.9 * rng.standard_normal((min(step, n - a), DIM)).astype(np.float32) / np.sqrt(DIM)
        out[a : a + step] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, labels


def matmul_gflops() -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((8192, DIM)).astype(np.float32)
    b = rng.standard_normal((DIM, 32768)).astype(np.float32)
    a @ b
    t0 = time.perf_counter()
    reps = 3
    for _ in range(reps):
        a @ b
    dt = (time.perf_counter() - t0) / reps
    return 2 * 8192 * 32768 * DIM / dt / 1e9


def recall(exact_idx: np.ndarray, approx_idx: np.ndarray) -> float:
    hits = [len(set(e) & set(a)) for e, a in zip(exact_idx, approx_idx)]
    return float(np.mean(hits) / exact_idx.shape[1])


def run_size(n: int, model_path: str, kinds: list[str]) -> dict:
    import faiss
    import torch

    from pipeline.clustering.methods import cluster
    from pipeline.clustering.metrics import evaluate_clustering
    from pipeline.clustering.gcn import GcnModel, deoverlap, predict
    from pipeline.clustering.knn import build_knn, resolve_index
    from pipeline.clustering.proposals import generate_proposals

    faiss.omp_set_num_threads(2)
    torch.set_num_threads(2)
    out: dict = {"n": n, "k": K, "dim": DIM}
    t0 = time.perf_counter()
    emb, labels = synthetic(n)
    out["synthetic_identities"] = int(labels.max() + 1)
    out["generate_s"] = round(time.perf_counter() - t0, 1)
    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(n, 1000, replace=False))
    exact = np.empty((sample.size, K), np.int64)
    exact_sims = np.empty((sample.size, K), np.float32)
    for a in range(0, sample.size, 100):
        q = sample[a : a + 100]
        s = emb[q] @ emb.T
        s[np.arange(q.size), q] = -np.inf
        exact[a : a + 100] = np.argpartition(-s, K, axis=1)[:, :K]
        exact_sims[a : a + 100] = np.take_along_axis(s, exact[a : a + 100], axis=1)
    del s
    strong = exact_sims >= STRONG
    knn = {}
    graph = None
    auto = resolve_index(n, "auto")
    for kind in kinds:
        t0 = time.perf_counter()
        g = build_knn(emb, K, kind)
        dt = time.perf_counter() - t0
        found = np.array([[j in set(row) for j in ex] for ex, row in zip(exact, g.indices[sample])])
        knn[kind] = {"seconds": round(dt, 1), "recall_at_k": round(recall(exact, g.indices[sample]), 4),
                     f"recall_sim_ge_{STRONG}": round(float(found[strong].mean()), 4),
                     "peak_rss_gib": round(peak_rss_gib(), 2)}
        print(n, kind, knn[kind], flush=True)
        if graph is None or kind == auto:  # features -> labels use the index the product picks at this size
            graph = g
        else:
            del g
    out["knn"] = knn
    out["knn_used"] = graph.index_kind
    model = GcnModel.load(model_path)
    stages = {}
    t0 = time.perf_counter()
    props = generate_proposals(graph, model.config.proposals, emb)
    stages["proposals"] = time.perf_counter() - t0
    out["proposals"] = {"count": len(props), "faces_in_proposals": int(props.sizes.sum())}
    t0 = time.perf_counter()
    iou, _ = predict(model, emb, graph, props)
    stages["gcn_inference"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lab = deoverlap(props, iou, n)
    stages["deoverlap"] = time.perf_counter() - t0
    out["gcn_d_stages_s"] = {k: round(v, 1) for k, v in stages.items()}
    out["gcn_d_total_s"] = round(knn[graph.index_kind]["seconds"] + sum(stages.values()), 1)
    out["gcn_d_peak_rss_gib"] = round(peak_rss_gib(), 2)
    r = evaluate_clustering(labels, lab)
    out["gcn_d_quality"] = {k: round(r[k], 4) for k in ("pairwise_f", "bcubed_f", "nmi")}
    print(n, "gcn-d", out["gcn_d_stages_s"], out["gcn_d_quality"], flush=True)
    del props
    t0 = time.perf_counter()
    lab = cluster(emb, "infomap", graph=graph)
    dt = time.perf_counter() - t0
    out["infomap_s"] = round(dt, 1)
    out["infomap_total_s"] = round(knn[graph.index_kind]["seconds"] + dt, 1)
    out["infomap_peak_rss_gib"] = round(peak_rss_gib(), 2)
    r = evaluate_clustering(labels, lab)
    out["infomap_quality"] = {k: round(r[k], 4) for k in ("pairwise_f", "bcubed_f", "nmi")}
    print(n, "infomap", dt, out["infomap_quality"], flush=True)
    out["peak_rss_gib"] = round(peak_rss_gib(), 2)
    return out


def ensure_model(path: Path) -> str:
    """The GCN-D checkpoint from the quality bench, else a small one trained on synthetic faces."""
    if path.is_file():
        return str(path)
    from pipeline.clustering.gcn import GcnConfig, train_gcn

    emb, labels = synthetic(5000, seed=7)
    model = train_gcn(emb, labels, GcnConfig(in_dim=DIM, epochs=5))
    alt = CACHE / "gcnd_synthetic.pt"
    model.save(alt)
    return str(alt)


def write_md(res: dict, path: Path) -> None:
    g = res["matmul_gflops"]
    lines = ["# Clustering speed and memory", "", f"Command: `{res['command']}`  ",
             f"Machine: {json.dumps(res['machine'])}.  ",
             f"Measured float32 matmul: **{g:.1f} GFLOP/s** (NumPy, 8192x128 @ 128x32768).  ",
             f"GCN-D checkpoint: {res['model']}; k={K}; data: {res['data']}", "",
             "## kNN graph", "",
             "| N | index | seconds | recall@k (1,000 queries vs exact) | recall of edges with cos >= 0.5 | matmul bound 2 N^2 d / GFLOP/s (s) | peak RSS GiB |",
             "|---|---|---|---|---|---|---|"]
    for r in res["sizes"]:
        bound = 2 * r["n"] ** 2 * DIM / (g * 1e9)
        for kind, v in r["knn"].items():
            lines.append(f"| {r['n']:,} | {kind} | {v['seconds']} | {v['recall_at_k']} | {v[f'recall_sim_ge_{STRONG}']} | "
                         f"{bound:.0f} | {v['peak_rss_gib']} |")
    lines += ["", "(N^2 d multiply-adds = 2 N^2 d flops.)", "", "## Features to labels", "",
              "| N | kNN (index) | proposals | GCN inference | de-overlap | GCN-D total | Infomap (after kNN) | Infomap total | peak RSS GiB | GCN-D pairwise F / BCubed F | Infomap pairwise F / BCubed F |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["sizes"]:
        st = r["gcn_d_stages_s"]
        lines.append(
            f"| {r['n']:,} | {r['knn'][r['knn_used']]['seconds']} ({r['knn_used']}) | {st['proposals']} | {st['gcn_inference']} | "
            f"{st['deoverlap']} | **{r['gcn_d_total_s']}** | {r['infomap_s']} | **{r['infomap_total_s']}** | {r['peak_rss_gib']} | "
            f"{r['gcn_d_quality']['pairwise_f']} / {r['gcn_d_quality']['bcubed_f']} | "
            f"{r['infomap_quality']['pairwise_f']} / {r['infomap_quality']['bcubed_f']} |")
    lines += ["", "Targets: 100k faces features -> labels < 30 s; 1M < 15 min inside 24 GiB.", ""]
    lines += res.get("notes", [])
    path.write_text("\n".join(lines) + "\n")


def make_notes(res: dict) -> list[str]:
    g = res["matmul_gflops"]
    lines = ["## Notes", ""]
    for r in res["sizes"]:
        n = r["n"]
        bound = 2 * n**2 * DIM / (g * 1e9)
        used = r["knn"][r["knn_used"]]
        lines.append(
            f"- N={n:,}: exact search would need 2 N^2 d = {2 * n**2 * DIM:.2e} flops = {bound:.0f} s at the measured "
            f"{g:.0f} GFLOP/s; the {r['knn_used']} index took {used['seconds']} s "
            f"({bound / used['seconds']:.1f}x under the bound) and found {used[f'recall_sim_ge_{STRONG}'] * 100:.1f} % of the "
            f"neighbours with cosine >= {STRONG}. Features to labels: GCN-D {r['gcn_d_total_s']} s, Infomap "
            f"{r['infomap_total_s']} s; peak RSS {r['peak_rss_gib']} GiB.")
        if "flat" in r["knn"]:
            f = r["knn"]["flat"]["seconds"]
            lines.append(f"  Exact (flat) search ran at {2 * n**2 * DIM / f / 1e9:.0f} GFLOP/s effective ({f} s).")
    from pipeline.clustering.knn import AUTO_FLAT_MAX

    lines.append(f"- `build_knn(index='auto')` on the CPU searches exactly up to {AUTO_FLAT_MAX:,} faces and uses "
                 f"HNSW above (pipeline/clustering/knn.py; settings from bench/knn_compare.py). Measured here, share of "
                 f"the cos >= {STRONG} "
                 "edges each index found: " + "; ".join(
                     f"N={r['n']:,}: " + ", ".join(f"{k} {v[f'recall_sim_ge_{STRONG}'] * 100:.0f} % in {v['seconds']} s"
                                                   for k, v in r["knn"].items()) for r in res["sizes"]) + ".")
    lines += [
        f"- Load average while this ran (1, 5, 15 min), read at the end: {res['machine'].get('load_average_1_5_15')}; "
        "other jobs on the machine make times upper bounds.",
        ("- GCN-D timings use a checkpoint this script trained on 5,000 synthetic vectors (the LFW checkpoint of "
         "bench/clustering_quality.py was not in the cache)" if "synthetic" in str(res["model"]) else
         "- GCN-D timings use the checkpoint bench/clustering_quality.py trained on LFW (128-d SFace features)")
        + ", applied to synthetic vectors: quality columns are a sanity check, not a result.",
    ]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--kinds", nargs="+", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=str(CACHE / "gcnd_lfw_train.pt"))
    ap.add_argument("--out", default=str(RESULTS / "clustering_speed"))
    ap.add_argument("--timeout", type=int, default=1500)
    ap.add_argument("--md-only", action="store_true", help="rewrite the .md from the .json")
    args = ap.parse_args()
    if args.md_only:
        out = Path(args.out)
        res = json.loads(out.with_suffix(".json").read_text())
        res["notes"] = make_notes(res)
        write_md(res, out.with_suffix(".md"))
        return 0
    if args.one:
        print("RESULT " + json.dumps(run_size(args.one, args.model, args.kinds)), flush=True)
        return 0
    model = ensure_model(Path(args.model))
    res = {"command": "PYTHONPATH=. .venv/bin/python bench/clustering_speed.py " + " ".join(sys.argv[1:]),
           "machine": None,
           "matmul_gflops": round(matmul_gflops(), 1), "model": model,
           "data": "synthetic clustered unit vectors (see bench/clustering_speed.py)", "sizes": []}
    print("matmul GFLOP/s", res["matmul_gflops"], flush=True)
    for n in args.sizes:
        kinds = ["flat", "ivf", "hnsw"] if n <= 200_000 else ["ivf", "hnsw"]
        cmd = [sys.executable, __file__, "--one", str(n), "--model", model, "--kinds", *kinds]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        sys.stderr.write(proc.stderr[-3000:])
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        print(proc.stdout, flush=True)
        if not line:
            raise SystemExit(f"size {n} failed (rc {proc.returncode})")
        res["sizes"].append(json.loads(line[-1][7:]))
    from bench.harness import facts

    res["machine"] = facts()
    res["notes"] = make_notes(res)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    write_md(res, out.with_suffix(".md"))
    print("wrote", out.with_suffix(".json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
