"""p- at scale: the full softmax against the nearest-clusters one (pipeline.uncertainty.nearest).

    .venv/bin/python bench/uncertainty_scale.py                      # about 15 minutes on 2 cores
    .venv/bin/python bench/uncertainty_scale.py --sizes 20000 --no-real   # a quick look

1. Agreement, on sets whose clustering makes real mistakes: the LFW test half and glint-sample (SFace
   features from the reference cache, as bench/uncertainty.py reports them) and synthetic faces at 50k
   (bench/clustering_speed.py's generator, within-person cosine about 0.55, so the clusterer errs), each
   clustered with the product's default clusterer. For each set: the calibrated p- (the product's default)
   with every cluster as a class (candidates 0) and with each face's own cluster and its C - 1 nearest
   (C = 16, 64): AP for the wrongly clustered faces (pipeline.uncertainty.wrongly_clustered) next to the
   base rate, Spearman correlation with the full softmax's p-, and seconds. Nothing here chose C: 64 was
   set before this ran (the full softmax at about 1,000 classes a face costs 16x more); the numbers say
   whether it holds.
2. Time of ``clustering_uncertainty`` with the default settings (auto: the full softmax while N x K <=
   2.5e8, else 64 candidates) and with the full softmax forced, on synthetic faces at ``--sizes`` (the
   full one only up to ``--full-max``).

Writes bench/results/uncertainty_scale.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import harness  # noqa: E402
from bench.clustering_quality import split_identities  # noqa: E402
from bench.clustering_speed import synthetic  # noqa: E402
from bench.extract_reference_features import CACHE  # noqa: E402
from pipeline.clustering.methods import DEFAULT_METHOD, cluster  # noqa: E402
from pipeline.features import load_features  # noqa: E402
from pipeline.uncertainty import SoftmaxConfig, average_precision, clustering_uncertainty, wrongly_clustered  # noqa: E402

CANDIDATES = (0, 16, 64)
BASE = SoftmaxConfig(device="cpu", num_threads=2)


def real_sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    lfw = load_features(CACHE / "features" / "lfw_sface.npz")
    glint = load_features(CACHE / "features" / "glint_sface.npz")
    ids, _ = lfw.label_ids()
    test = ~split_identities(ids, 0.5, 0)
    g_ids, _ = glint.label_ids()
    return {"lfw-test": (lfw.embeddings[test], ids[test]), "glint-sample": (glint.embeddings, g_ids)}


def agreement(name: str, emb: np.ndarray, truth: np.ndarray) -> dict:
    labels = cluster(emb, DEFAULT_METHOD)
    wrong = wrongly_clustered(labels, truth)["wrong"]
    keep = labels >= 0
    row = {"set": name, "faces": int(len(emb)), "clusters": int(labels.max()) + 1, "wrong": int(wrong[keep].sum()),
           "base_rate": round(float(wrong[keep].mean()), 4), "by_candidates": {}}
    full = None
    for c in CANDIDATES:
        with harness.timed() as t:
            res = clustering_uncertainty(emb, labels, replace(BASE, candidates=c))
        p = res.p_minus
        entry = {"seconds": round(t.seconds, 2), "ap": round(average_precision(p[keep], wrong[keep]), 4),
                 "classes_per_face": res.report.get("softmax_classes_per_face")}
        if full is None:
            full = p
        else:
            entry["spearman_vs_full"] = round(float(spearmanr(full[keep], p[keep]).statistic), 4)
            entry["mean_abs_diff_vs_full"] = round(float(np.mean(np.abs(full[keep] - p[keep]))), 5)
        row["by_candidates"][str(c)] = entry
        print(name, c, entry, flush=True)
    return row


def timing(n: int, full_max: int) -> dict:
    emb, person = synthetic(n)
    labels = person.copy()  # a clustering with the people's sizes; time does not depend on its mistakes
    row = {"faces": n, "clusters": int(labels.max() + 1)}
    for name, cfg in (("auto", BASE), ("full", replace(BASE, candidates=0))):
        if name == "full" and n > full_max:
            continue
        with harness.timed() as t:
            res = clustering_uncertainty(emb, labels, cfg)
        row[name] = {"seconds": round(t.seconds, 2), "classes_per_face": res.report.get("softmax_classes_per_face"),
                     "peak_rss_mib": round(harness.peak_rss_mib())}
        print(n, name, row[name], flush=True)
    return row


def markdown(res: dict) -> str:
    lines = ["# p- at scale: the full softmax and the nearest-clusters one", "",
             "Calibrated p- (the product's default) with every cluster as a class (0) and with each face's own and "
             "nearest clusters (16, 64). AP for the wrongly clustered faces (clustered faces only) next to the base "
             "rate; Spearman and mean |difference| against the full softmax's p-.", "",
             "| set | faces | clusters | wrong (base rate) | classes a face | AP | Spearman vs full | mean abs diff | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["agreement"]:
        for c, e in r["by_candidates"].items():
            lines.append(f"| {r['set']} | {r['faces']:,} | {r['clusters']:,} | {r['wrong']:,} ({r['base_rate']}) | "
                         f"{e['classes_per_face']} | {e['ap']} | {e.get('spearman_vs_full', '-')} | "
                         f"{e.get('mean_abs_diff_vs_full', '-')} | {e['seconds']} |")
    lines += ["", "Time of clustering_uncertainty on synthetic faces (the run's p- stage without its database work):", "",
              "| faces | clusters | default (auto) s | classes a face | full softmax s | peak RSS MiB |", "|---|---|---|---|---|---|"]
    for r in res["timing"]:
        full = r.get("full", {}).get("seconds", "not run")
        lines.append(f"| {r['faces']:,} | {r['clusters']:,} | {r['auto']['seconds']} | {r['auto']['classes_per_face']} | "
                     f"{full} | {r['auto']['peak_rss_mib']:,} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20000,100000,1000000")
    ap.add_argument("--full-max", type=int, default=100_000, help="largest size the full softmax is timed at")
    ap.add_argument("--real", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--name", default="uncertainty_scale")
    args = ap.parse_args()
    torch.set_num_threads(2)
    res = {"agreement": [], "timing": []}
    if args.real:
        for name, (emb, truth) in real_sets().items():
            res["agreement"].append(agreement(name, emb, truth))
        emb, person = synthetic(50_000)
        res["agreement"].append(agreement("synthetic-50k", emb, person))
    for n in (int(s) for s in args.sizes.split(",") if s):
        res["timing"].append(timing(n, args.full_max))
    harness.write_results(args.name, res, markdown(res))


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t0:.0f} s")
