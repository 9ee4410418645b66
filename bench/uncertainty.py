"""Clustering uncertainty p- against ground truth on real SFace features, plus softmax-regression scaling.

Quality (per data set and clustering): cluster the faces with average-link HAC at a cosine distance threshold
(fastcluster), mark each face wrongly clustered as the paper defines it (pipeline.uncertainty.wrongly_clustered:
an *outlier* -- not the majority identity of its cluster -- or a *split* -- in a cluster that is not the largest
cluster of its majority identity), then report the average precision (sklearn average_precision_score, the wrong
faces are the positives) of each score at finding the wrong faces: entropy (high = wrong), max-logit (low = wrong),
top-2 class margin (low = wrong), assigned-cluster margin (low = wrong), and p- (high = wrong; from the assigned
margin by default, or from the top-2 margin). Three softmax variants (2 epochs of minibatch Adam from the
cluster-mean start): in-sample (cross_fit=0: trained and scored on the same faces, the paper's reading),
cross-fitted (cross_fit=5, the default: each face scored by a classifier trained on the other 4 folds), and
cross-fitted with unseen_quantile=0.5 (faces whose cluster is absent from the training folds get the median
own-cluster logit). p- calibration: mean p- against the observed wrong rate in p- bins.

Scaling: fit_softmax + softmax_scores on synthetic clustered data (N faces, K clusters, d=128) on this CPU, timed.

    .venv/bin/python bench/uncertainty.py            # quality + scaling (100k x 10k; 1M x 100k timed per step)
    .venv/bin/python bench/uncertainty.py --quick    # smaller scaling run
Writes bench/results/uncertainty.json/.md/.png (PNG: Fig. 4c for LFW, threshold 0.5, cross-fitted default).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.extract_reference_features import CACHE  # noqa: E402

from pipeline.evt_plots import plot_report  # noqa: E402
from pipeline.features import l2_normalize, load_features  # noqa: E402
from pipeline.uncertainty import (  # noqa: E402
    PMinusConfig,
    SoftmaxConfig,
    clustering_uncertainty,
    fit_p_minus,
    fit_softmax,
    softmax_scores,
    wrongly_clustered,
)

FEATURES = CACHE / "features"  # honours FACECURATE_CACHE
RESULTS = ROOT / "bench" / "results"


def hac(emb: np.ndarray, thresholds):
    import fastcluster
    from scipy.cluster.hierarchy import fcluster

    z = fastcluster.linkage(emb.astype(np.float64), method="average", metric="cosine")
    return {t: fcluster(z, t=t, criterion="distance").astype(np.int64) - 1 for t in thresholds}


def ap_table(res, wrong: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score

    scores = {
        "entropy": res.entropy,
        "max_logit": -res.max_logit,
        "top2_margin": -res.margin,
        "assigned_margin": -res.assigned_margin,
        "p_minus": res.p_minus,
    }
    return {k: float(average_precision_score(wrong, v)) for k, v in scores.items()}


def calibration(p: np.ndarray, wrong: np.ndarray, bins=(0, 0.05, 0.2, 0.5, 0.8, 0.95, 1.0001)) -> list[dict]:
    out = []
    for a, b in zip(bins[:-1], bins[1:]):
        m = (p >= a) & (p < b)
        if m.any():
            out.append({"bin": [a, min(b, 1.0)], "faces": int(m.sum()), "mean_p_minus": float(p[m].mean()),
                        "wrong_rate": float(wrong[m].mean())})
    return out


def quality(args) -> tuple[list[dict], dict | None]:
    rows, fig_report = [], None
    sets = [("lfw", (0.5, 0.6)), ("glint", (0.5, 0.6))]
    for name, thresholds in sets:
        fs = load_features(FEATURES / f"{name}_sface.npz")
        t0 = time.perf_counter()
        labs = hac(fs.embeddings, thresholds)
        t_hac = time.perf_counter() - t0
        for thr, lab in labs.items():
            gt = wrongly_clustered(lab, fs.labels)
            wrong = gt["wrong"]
            for variant, cfg in (("in-sample", SoftmaxConfig(cross_fit=0)), ("cross-fit 5", SoftmaxConfig()),
                                 ("cross-fit 5, unseen median", SoftmaxConfig(unseen_quantile=0.5))):
                cfg = replace(cfg, num_threads=2)
                t0 = time.perf_counter()
                base = clustering_uncertainty(fs.embeddings, lab, cfg, PMinusConfig(margin_kind="assigned"))
                sec = time.perf_counter() - t0
                for kind in ("assigned", "top2"):
                    res = base
                    if kind == "top2":  # same classifier scores, p- from the top-2 margin instead
                        fit = fit_p_minus(base.margin, PMinusConfig(margin_kind="top2"))
                        res = replace(base, p_minus=fit.p_minus(base.margin), degenerate=fit.degenerate)
                    row = {
                        "set": name, "faces": len(fs), "hac_threshold": thr, "hac_seconds": round(t_hac, 2),
                        "clusters": int(lab.max() + 1), "wrong_rate": float(wrong.mean()),
                        "outlier_rate": float(gt["outlier"].mean()), "split_rate": float(gt["split"].mean()),
                        "softmax": variant, "p_minus_margin": kind, "seconds": round(sec, 2),
                        "degenerate": res.degenerate,
                        "ap": ap_table(res, wrong) if not res.degenerate else None,
                        "train_accuracy": res.report.get("train_accuracy"),
                        "weibull": res.report.get("weibull"),
                        "calibration": calibration(res.p_minus, wrong) if not res.degenerate else None,
                    }
                    rows.append(row)
                    print(name, thr, variant, kind, row["wrong_rate"], row["ap"], f"{sec:.1f}s", flush=True)
                    if name == "lfw" and thr == 0.5 and variant == "cross-fit 5" and kind == "assigned":
                        fig_report = res.report
    return rows, fig_report


def synthetic(n: int, k: int, d: int = 128, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.nn.functional.normalize(torch.randn(k, d, generator=g), dim=1)
    y = torch.randint(0, k, (n,), generator=g)
    x = centers[y] + 0.35 * torch.randn(n, d, generator=g) / d**0.5 * 4
    return l2_normalize(x.numpy()), y.numpy().astype(np.int64)


def scaling(args) -> list[dict]:
    torch.set_num_threads(2)
    out = []
    for n, k, epochs in args.scale:
        x, y = synthetic(n, k)
        cfg = SoftmaxConfig(epochs=epochs, cross_fit=0, device=args.device, num_threads=2)
        t0 = time.perf_counter()
        model = fit_softmax(x, y, cfg, num_classes=k)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        sc = softmax_scores(model, x, y)
        t_score = time.perf_counter() - t0
        row = {"faces": n, "clusters": k, "dim": 128, "epochs": epochs, "device": args.device,
               "fit_seconds": round(t_fit, 2), "score_seconds": round(t_score, 2),
               "train_accuracy": float(np.mean(sc["predicted"] == y)),
               "batch_size": int(max(16, min(cfg.batch_size, cfg.max_batch_logits // k)))}
        out.append(row)
        print(row, flush=True)
    if args.big_steps:
        n, k = 1_000_000, 100_000
        x, y = synthetic(n, k)
        cfg = SoftmaxConfig(epochs=1, cross_fit=0, device=args.device, num_threads=2)
        bs = int(max(16, min(cfg.batch_size, cfg.max_batch_logits // k)))
        steps = args.big_steps
        # Time `steps` optimiser steps of the same loop on the first steps * bs faces, and scoring of 20k faces.
        sub = slice(0, steps * bs)
        t0 = time.perf_counter()
        model = fit_softmax(x[sub], y[sub], cfg, num_classes=k)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        softmax_scores(model, x[:20000], y[:20000])
        t_score = time.perf_counter() - t0
        if args.big_epoch:
            t0 = time.perf_counter()
            fit_softmax(x, y, cfg, num_classes=k)
            t_full = time.perf_counter() - t0
        per_step = t_fit / steps
        row = {"faces": n, "clusters": k, "dim": 128, "device": args.device, "batch_size": bs,
               "measured_steps": steps, "measured_fit_seconds": round(t_fit, 2),
               "seconds_per_step": round(per_step, 4), "steps_per_epoch": int(np.ceil(n / bs)),
               "extrapolated_epoch_seconds": round(per_step * np.ceil(n / bs), 1),
               "measured_score_seconds_20k": round(t_score, 2),
               "extrapolated_score_seconds_1M": round(t_score * n / 20000, 1)}
        if args.big_epoch:
            row["measured_full_epoch_seconds"] = round(t_full, 1)
        out.append(row)
        print(row, flush=True)
    return out


def write_md(out: dict, path: Path, cmd: str) -> None:
    lines = [
        "# Clustering uncertainty p- on real faces",
        "",
        f"Command: `{cmd}`",
        "",
        "Clusters: average-link HAC on SFace features at a cosine distance threshold. Wrong = outlier (not the "
        "majority identity of its cluster) or split (in a cluster that is not the largest one of its majority "
        "identity). Average precision at finding the wrong faces (positives); the wrong rate is the AP of a random "
        "score. Softmax: 2 epochs of minibatch Adam from the cluster-mean start; in-sample = trained and scored on the "
        "same faces; cross-fit 5 = each face scored by a classifier fitted on the other 4 folds (the default); "
        "unseen median = cross-fit, and faces whose cluster is absent from the training folds get the median "
        "own-cluster logit. Last column: fraction of faces whose classifier top-1 is their own cluster.",
        "",
        "| set | HAC thr | clusters | wrong % (outlier / split) | softmax | AP entropy | AP max-logit | "
        "AP top-2 margin | AP assigned margin | AP p- (margin it uses) | top-1 = own cluster |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    seen = set()
    for r in out["quality"]:
        if r["ap"] is None:
            lines.append(f"| {r['set']} | {r['hac_threshold']} | {r['clusters']} | | {r['softmax']} | degenerate: "
                         f"{r['degenerate']} | | | | | |")
            continue
        key = (r["set"], r["hac_threshold"], r["softmax"])
        a = r["ap"]
        if key not in seen:
            seen.add(key)
            lines.append(
                f"| {r['set']} ({r['faces']}) | {r['hac_threshold']} | {r['clusters']} | "
                f"{100 * r['wrong_rate']:.2f} ({100 * r['outlier_rate']:.2f} / {100 * r['split_rate']:.2f}) | "
                f"{r['softmax']} | {a['entropy']:.3f} | {a['max_logit']:.3f} | {a['top2_margin']:.3f} | "
                f"{a['assigned_margin']:.3f} | {a['p_minus']:.3f} ({r['p_minus_margin']}) | "
                f"{r['train_accuracy']:.3f} |")
        else:
            lines.append(f"| | | | | | | | | | {a['p_minus']:.3f} ({r['p_minus_margin']}) | |")
    for variant in ("cross-fit 5", "cross-fit 5, unseen median"):
        for thr in (0.5, 0.6):
            cal = [r for r in out["quality"] if r["set"] == "lfw" and r["hac_threshold"] == thr
                   and r["softmax"] == variant and r["p_minus_margin"] == "assigned"]
            if cal and cal[0]["calibration"]:
                lines += ["", f"p- calibration (LFW, HAC {thr}, {variant}, assigned margin): mean p- vs observed "
                          "wrong rate", "", "| p- bin | faces | mean p- | wrong rate |", "|---|---|---|---|"]
                for c in cal[0]["calibration"]:
                    lines.append(f"| [{c['bin'][0]}, {c['bin'][1]:.2f}) | {c['faces']} | {c['mean_p_minus']:.3f} | "
                                 f"{c['wrong_rate']:.3f} |")
    lines += ["", "## Softmax regression scaling (synthetic clustered features, d = 128)", "",
              "| faces | clusters | epochs | batch | fit s | score s | note |", "|---|---|---|---|---|---|---|"]
    for r in out["scaling"]:
        if "measured_steps" in r:
            lines.append(
                f"| {r['faces']} | {r['clusters']} | 1 | {r['batch_size']} | {r['seconds_per_step']} per step, "
                f"{r['measured_steps']} steps measured | {r['measured_score_seconds_20k']} for 20k faces | "
                f"extrapolated on this CPU: {r['extrapolated_epoch_seconds']} s per epoch "
                f"({r['steps_per_epoch']} steps), {r['extrapolated_score_seconds_1M']} s to score 1M |")
        else:
            lines.append(f"| {r['faces']} | {r['clusters']} | {r['epochs']} | {r['batch_size']} | "
                         f"{r['fit_seconds']} | {r['score_seconds']} | train acc {r['train_accuracy']:.3f} |")
    lines += ["", f"Machine: {out['machine']}, 2 CPU threads, no GPU; Python {out['python']}, torch "
              f"{out['torch']}.", ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="device for the scaling runs")
    p.add_argument("--quick", action="store_true", help="scaling: 20k x 2k only, no 1M x 100k steps")
    p.add_argument("--no-quality", action="store_true")
    p.add_argument("--big-steps", type=int, default=20, help="optimiser steps timed at 1M x 100k (0: skip)")
    p.add_argument("--big-epoch", action="store_true", help="also run one full epoch at 1M x 100k (GPU)")
    args = p.parse_args(argv)
    args.scale = [(20_000, 2_000, 2)] if args.quick else [(20_000, 2_000, 2), (100_000, 10_000, 1)]
    if args.quick:
        args.big_steps = 0
    rows, fig = ([], None) if args.no_quality else quality(args)
    out = {"benchmark": "uncertainty", "quality": rows, "scaling": scaling(args), "machine": platform.platform(),
           "python": platform.python_version(), "torch": torch.__version__,
           "defaults": {"softmax": asdict(SoftmaxConfig()), "p_minus": asdict(PMinusConfig())}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "uncertainty.json").write_text(json.dumps({**out, "report_lfw_0.5": fig}, indent=1))
    cmd = "python bench/uncertainty.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_md(out, RESULTS / "uncertainty.md", cmd.strip())
    if fig is not None:
        plot_report(fig, RESULTS / "uncertainty.png", title="LFW, HAC 0.5: p- margin histogram, Otsu and Weibull "
                    "(Fig. 4c)")
    print("wrote bench/results/uncertainty.json/.md/.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
