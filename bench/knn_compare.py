"""kNN graph libraries side by side (issue 18, item 1): time, peak memory and recall of the strong edges.

    nice -n 10 .venv/bin/python bench/knn_compare.py --n 100000            # synthetic 100k + real glint
    nice -n 10 .venv/bin/python bench/knn_compare.py --n 1000000 --skip flat

Data: the synthetic clustered unit vectors of bench/clustering_speed.py (d=128, geometric cluster sizes)
and the real SFace features of glint-sample (the cached reference features). For each, exact search on
``--sample`` random query rows gives their true k nearest others; a *strong edge* is one of those with
cosine >= 0.5, and each method is scored by the share of the sample's strong edges its graph holds (and by
recall@k). Every method runs in its own child process (peak RSS is per process; the data alone is
reported as ``data_rss``), with 2 threads. Configurations are fixed here, not tuned on these numbers:
lists/probes and graph settings scale with N by the rules written next to each.
Writes bench/results/knn_compare.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import harness  # noqa: E402

OUT = ROOT / "bench" / "out" / "knn_compare"
THREADS = 2
STRONG = 0.5


def ivf_lists(n: int) -> int:
    return int(max(1, min(n // 39, round(4 * math.sqrt(n)))))


def methods(n: int, k: int) -> dict[str, dict]:
    nl = ivf_lists(n)
    return {
        "faiss flat (exact)": {"lib": "faiss", "kind": "flat"},
        # nprobe a fixed share of the lists: the scanned fraction, not the count, sets recall
        f"faiss IVF{nl},Flat nprobe {max(1, nl // 50)} (2 %)": {"lib": "faiss", "kind": "ivf", "nlist": nl,
                                                               "nprobe": max(1, nl // 50)},
        f"faiss IVF{nl},Flat nprobe {max(1, nl // 20)} (5 %)": {"lib": "faiss", "kind": "ivf", "nlist": nl,
                                                               "nprobe": max(1, nl // 20)},
        f"faiss IVF{nl},SQ8 nprobe {max(1, nl // 20)} (5 %) + refine": {
            "lib": "faiss", "kind": "ivf_sq8_refine", "nlist": nl, "nprobe": max(1, nl // 20), "k_factor": 2},
        "faiss HNSW M16 efC40 efS64": {"lib": "faiss", "kind": "hnsw", "M": 16, "efC": 40, "efS": max(64, 2 * k)},
        "faiss HNSW M32 efC80 efS64 (main's)": {"lib": "faiss", "kind": "hnsw", "M": 32, "efC": 80,
                                                "efS": max(64, 2 * k)},
        # build cost grows with M x efConstruction, search cost with efSearch: a light build, a wider search
        "faiss HNSW M16 efC40 efS128": {"lib": "faiss", "kind": "hnsw", "M": 16, "efC": 40, "efS": 128},
        "faiss HNSW M16 efC40 efS256": {"lib": "faiss", "kind": "hnsw", "M": 16, "efC": 40, "efS": 256},
        "faiss HNSW M16 efC80 efS128": {"lib": "faiss", "kind": "hnsw", "M": 16, "efC": 80, "efS": 128},
        f"faiss IVF{nl},Flat nprobe {max(1, nl // 10)} (10 %)": {"lib": "faiss", "kind": "ivf", "nlist": nl,
                                                                "nprobe": max(1, nl // 10)},
        "usearch HNSW f32 M16 efC64 efS64": {"lib": "usearch", "dtype": "f32", "M": 16, "efC": 64, "efS": 64},
        "usearch HNSW i8 M16 efC64 efS64": {"lib": "usearch", "dtype": "i8", "M": 16, "efC": 64, "efS": 64},
        "usearch exact (SIMD brute force)": {"lib": "usearch", "exact": True},
        "pynndescent NN-descent": {"lib": "pynndescent"},
        # the product's own: a light HNSW build, its links joined through strong edges (pipeline/clustering/knn_join.py)
        "product hnsw-join (64-d HNSW M32 efC32 links + strong-edge join)": {"lib": "product", "kind": "hnsw-join"},
    }


# --------------------------------------------------------------------------- data and ground truth
def data(name: str, n: int) -> tuple[np.ndarray, Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}-{n}.npy"
    if path.is_file():
        return np.load(path), path
    if name == "synthetic":
        from bench.clustering_speed import synthetic

        emb = synthetic(n)[0]
    else:
        from pipeline.features import load_features

        emb = load_features(ROOT / ".cache" / "features" / f"{name}_sface.npz").embeddings.astype(np.float32)
    np.save(path, emb)
    return emb, path


def exact_sample(emb: np.ndarray, k: int, sample: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.sort(np.random.default_rng(seed).choice(len(emb), min(sample, len(emb)), replace=False))
    sims = emb[rows] @ emb.T
    sims[np.arange(len(rows)), rows] = -np.inf
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    s = np.take_along_axis(sims, top, axis=1)
    return rows, top, s


# --------------------------------------------------------------------------- one method, in a child
def hwm_mib() -> float:
    """This process's peak resident memory since its exec (VmHWM; ru_maxrss would carry the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return harness.peak_rss_mib()


def _faiss(emb: np.ndarray, k: int, m: dict) -> np.ndarray:
    import faiss

    faiss.omp_set_num_threads(THREADS)
    d = emb.shape[1]
    if m["kind"] == "flat":
        index = faiss.IndexFlatIP(d)
    elif m["kind"] == "hnsw":
        index = faiss.IndexHNSWFlat(d, m["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction, index.hnsw.efSearch = m["efC"], m["efS"]
    else:
        q = faiss.IndexFlatIP(d)
        if m["kind"] == "ivf":
            index = faiss.IndexIVFFlat(q, d, m["nlist"], faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFScalarQuantizer(q, d, m["nlist"], faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        n_train = min(len(emb), m["nlist"] * 64)
        index.cp.min_points_per_centroid = 1
        index.train(emb[np.sort(rng.choice(len(emb), n_train, replace=False))])
        index.nprobe = m["nprobe"]
        if m["kind"] == "ivf_sq8_refine":
            index = faiss.IndexRefineFlat(index)
            index.k_factor = m["k_factor"]
    index.add(emb)
    out = np.empty((len(emb), k + 1), np.int64)
    for a in range(0, len(emb), 16384):
        out[a:a + 16384] = index.search(emb[a:a + 16384], k + 1)[1]
    return out


def _usearch(emb: np.ndarray, k: int, m: dict) -> np.ndarray:
    from usearch.index import Index, search

    if m.get("exact"):
        return search(emb, emb, k + 1, metric="ip", exact=True, threads=THREADS).keys.astype(np.int64)
    index = Index(ndim=emb.shape[1], metric="ip", dtype=m["dtype"], connectivity=m["M"],
                  expansion_add=m["efC"], expansion_search=m["efS"])
    index.add(np.arange(len(emb), dtype=np.uint64), emb, threads=THREADS)
    return index.search(emb, k + 1, threads=THREADS).keys.astype(np.int64)


def _pynndescent(emb: np.ndarray, k: int, m: dict) -> np.ndarray:
    from pynndescent import NNDescent

    return NNDescent(emb, metric="dot", n_neighbors=k + 1, n_jobs=THREADS, random_state=0,
                     low_memory=True, compressed=True).neighbor_graph[0].astype(np.int64)


def _product(emb: np.ndarray, k: int, m: dict) -> np.ndarray:
    from pipeline.clustering.knn import build_knn

    return build_knn(emb, k, m["kind"], threads=THREADS).indices


def child(args) -> None:
    m = json.loads(args.method)
    emb = np.load(args.data)
    truth = np.load(args.truth)
    rows, top, s = truth["rows"], truth["top"], truth["sims"]
    fn = {"faiss": _faiss, "usearch": _usearch, "pynndescent": _pynndescent, "product": _product}[m["lib"]]
    if m["lib"] in ("pynndescent", "product"):  # numba compiles (or loads its cache) on first use: apart
        with harness.timed() as tc:
            fn(emb[:2000], args.k, m)
    data_rss = hwm_mib()
    cpu0 = os.times()
    with harness.timed() as t:
        nbr = fn(emb, args.k, m)
    cpu1 = os.times()
    got = nbr[rows]
    strong = s >= STRONG
    hit = np.array([[j in set(g) for j in tr] for g, tr in zip(got.tolist(), top.tolist())])
    res = {"seconds": round(t.seconds, 2), "peak_rss_mib": hwm_mib(), "data_rss_mib": data_rss,
           # CPU seconds (user + system, all threads): far less bent by other load than the wall clock
           "cpu_s": round((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), 2),
           "recall_at_k": round(float(hit.mean()), 4),
           "strong_edges": int(strong.sum()),
           "strong_recall": round(float(hit[strong].mean()), 4) if strong.any() else None}
    if m["lib"] in ("pynndescent", "product"):
        res["compile_s"] = round(tc.seconds, 1)
    print("RESULT " + json.dumps(res), flush=True)


def run_set(name: str, n: int | None, k: int, sample: int, skip: list[str], timeout: float,
            only: list[str] = ()) -> dict:
    emb, path = data(name, n or 0)
    n = len(emb)
    rows, top, s = exact_sample(emb, k, sample)
    truth = OUT / f"truth-{name}-{n}.npz"
    np.savez(truth, rows=rows, top=top, sims=s)
    out = {"set": name, "n": n, "k": k, "sample": len(rows), "strong_edges_in_sample": int((s >= STRONG).sum()),
           "load_average_at_start": os.getloadavg(), "methods": {}}
    for label, m in methods(n, k).items():
        if any(x in label for x in skip) or (only and not any(x in label for x in only)):
            continue
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--k", str(k), "--method", json.dumps(m),
               "--data", str(path), "--truth", str(truth)]
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            r = json.loads(line[0][7:]) if line else {"error": proc.stderr[-500:]}
        except subprocess.TimeoutExpired:
            r = {"error": f"over {timeout:.0f} s"}
        out["methods"][label] = {**m, **r}
        print(name, n, label, r, flush=True)
    out["load_average_at_end"] = os.getloadavg()
    return out


def _md(res: dict) -> str:
    lines = ["# kNN graph: libraries side by side", "",
             f"k = {res['k']} neighbours per face, {THREADS} threads; recall measured on a random sample of rows "
             "against exact search; a strong edge is a true k-nearest neighbour with cosine >= 0.5. "
             "Peak RSS is the child process's (data included; the data alone in parentheses).", ""]
    for s in res["sets"]:
        lines += [f"## {s['set']}: N = {s['n']:,} ({s['sample']:,} sampled rows, {s['strong_edges_in_sample']:,} "
                  f"strong edges; load average {s['load_average_at_start'][0]:.1f} -> "
                  f"{s['load_average_at_end'][0]:.1f})", "",
                  "| method | seconds | CPU s | strong-edge recall | recall@k | peak RSS MiB (data) | note |",
                  "|---|---|---|---|---|---|---|"]
        for label, r in s["methods"].items():
            if "error" in r:
                lines.append(f"| {label} | - | - | - | - | - | {r['error'][:120]!s} |")
                continue
            note = f"numba compile {r['compile_s']} s not counted" if "compile_s" in r else ""
            lines.append(f"| {label} | {r['seconds']} | {r.get('cpu_s', '-')} | {r['strong_recall']} | {r['recall_at_k']} | "
                         f"{r['peak_rss_mib']:.0f} ({r['data_rss_mib']:.0f}) | {note} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--real", default="glint", help="cached reference features to compare on too ('' for none)")
    ap.add_argument("--skip", nargs="*", default=[], help="skip methods whose label contains any of these")
    ap.add_argument("--only", nargs="*", default=[], help="run only methods whose label contains one of these")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--name", help="results name (default knn_compare, or knn_compare_<n> when n is not 100k)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--truth", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    res = {"k": args.k, "sets": [run_set("synthetic", args.n, args.k, args.sample, args.skip, args.timeout, args.only)]}
    if args.real:
        res["sets"].append(run_set(args.real, None, args.k, args.sample, args.skip, args.timeout, args.only))
    name = args.name or ("knn_compare" if args.n == 100_000 else f"knn_compare_{args.n}")
    harness.write_results(name, res, _md(res))


if __name__ == "__main__":
    main()
