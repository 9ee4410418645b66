"""Clustering uncertainty p- against ground truth on real SFace features: ranking (AP) and calibration.

Protocol (every setting chosen on an inner split of the LFW training half only)
- LFW identities split in two halves by seed 0 exactly as bench/clustering_quality.py does
  (``split_identities(ids, 0.5, 0)``). The training half is split again by identities into 3 inner folds
  (seed 1); each fold in turn is *inner-val* and the other two *inner-fit* (pooled over the 3 folds, every
  training face is validated once -- one 2/3 : 1/3 split held only 2 wrong faces in clusters of >= 2).
- Every set is clustered on its own with the product's default clusterer (Infomap, default settings), and
  each face is marked wrongly clustered as the paper defines it (pipeline.uncertainty.wrongly_clustered).
- Settings chosen on inner-fit -> inner-val (pooled over the folds): the calibrator's feature sets and L2 strength
  (by log loss, separately for members of clusters of >= 2 and for singletons), the value a singleton gets in the
  leave-one-out-distance baseline (by AP; baselines keep their natural direction) and the cluster review-priority
  rule and merge weight (by cluster AP). The chosen calibrator is then refitted on the whole training half and
  shipped as pipeline/uncertainty/calibration.json; each baseline gets a one-feature
  logistic (Platt) map fitted on the whole training half so that it has a calibration table too (monotone: its AP
  is unchanged).
- Reported on the LFW test half and glint-sample, never used to pick anything: AP with the base rate and a
  calibration table for the calibrated p-, the mixture posterior, the paper's p- (literal in-sample, and with the
  cross-fitted softmax), and each baseline (cluster size, leave-one-out centroid distance, top-2 margin).

    FACECURATE_CACHE=... .venv/bin/python bench/uncertainty.py
writes bench/results/uncertainty.{json,md,png} and pipeline/uncertainty/calibration.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.harness import facts  # noqa: E402

from bench.clustering_quality import split_identities  # noqa: E402
from bench.extract_reference_features import CACHE  # noqa: E402

from pipeline.clustering.methods import DEFAULT_METHOD, cluster  # noqa: E402
from pipeline.features import load_features  # noqa: E402
from pipeline.uncertainty.calibrated import Calibrator, design  # noqa: E402
from pipeline.uncertainty import (  # noqa: E402
    CALIBRATION_PATH,
    PRIORITY_RULES,
    LogisticPart,
    PMinusConfig,
    SoftmaxConfig,
    ap_report,

    average_precision,
    baseline_scores,
    calibration_table,
    clustering_uncertainty,
    cluster_priority,
    cluster_truth,
    fit_calibrator,
    fit_logistic,
    fit_p_minus,
    mixture_p_minus,
    nearest_cluster_similarity,
    precision_recall,
    wrongly_clustered,
)

FEATURES = CACHE / "features"  # honours FACECURATE_CACHE
RESULTS = ROOT / "bench" / "results"
SEED = 0

MEMBER_SETS = {
    "margin": ["assigned_margin"],
    "geometry": ["loo_cos", "other_cos", "log_size", "inv_size"],
    "geometry+margin": ["loo_cos", "other_cos", "log_size", "inv_size", "assigned_margin"],
    "geometry+margin+quadratic": ["loo_cos", "other_cos", "log_size", "inv_size", "assigned_margin", "top2_margin",
                                  "loo_cos_sq", "other_cos_sq", "loo_x_other"],
}
SINGLETON_SETS = {
    "nearest": ["other_cos"],
    "nearest+size": ["other_cos", "log_other_size"],
    "nearest+size+margin": ["other_cos", "log_other_size", "assigned_margin"],
    "nearest+size+quadratic": ["other_cos", "log_other_size", "other_cos_sq"],
}
L2 = (1e-4, 1e-3, 1e-2, 1e-1)
INNER_FOLDS = 3
MERGE_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
MERGE_FLOOR = 0.3
CLEAR_MARGIN = 1.10  # "clearly better": AP at least 10 % above the best baseline's
MAX_CAL_DEV = 0.05
SCORE_NAMES = {
    "calibrated": "p- calibrated (default)",
    "mixture": "p- mixture posterior",
    "paper_insample": "p- paper, literal (in-sample softmax, top-2 margin)",
    "paper_top2": "p- paper (cross-fitted softmax, top-2 margin)",
    "paper_assigned": "p- previous default (Otsu + Weibull, cross-fitted assigned margin)",
    "small_cluster": "baseline: cluster size",
    "loo_distance": "baseline: leave-one-out centroid distance",
    "top2_margin": "baseline: top-2 margin",
}
PROBABILISTIC = ("calibrated", "mixture", "paper_insample", "paper_top2", "paper_assigned")
BASELINES = ("small_cluster", "loo_distance", "top2_margin")


def logloss(p, y) -> float:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def prepare(name: str, emb: np.ndarray, truth: np.ndarray) -> dict:
    """Cluster with the default clusterer, ground truth, cross-fitted softmax scores, geometry, paper p-s."""
    t0 = time.perf_counter()
    lab = cluster(emb, DEFAULT_METHOD)
    t_cl = time.perf_counter() - t0
    gt = wrongly_clustered(lab, truth)
    scfg = SoftmaxConfig(device="cpu", num_threads=2)
    t0 = time.perf_counter()
    res = clustering_uncertainty(emb, lab, scfg, PMinusConfig(method="paper", margin_kind="top2"))
    t_u = time.perf_counter() - t0
    g = {k: v for k, v in res.geometry.items()}
    g["assigned_margin"] = res.assigned_margin.astype(np.float64)
    g["margin"] = res.margin.astype(np.float64)
    u_assigned = np.clip((1 + res.assigned_margin) / 2, 0, 1)
    fa = fit_p_minus(u_assigned, PMinusConfig(margin_kind="assigned"))
    literal = clustering_uncertainty(emb, lab, replace(scfg, cross_fit=0), PMinusConfig(method="paper",
                                                                                        margin_kind="top2"))
    mix, mix_info = mixture_p_minus(res.assigned_margin)
    nan = np.full(len(lab), np.nan, np.float32)
    d = {
        "name": name, "labels": lab, "wrong": gt["wrong"], "gt": gt, "g": g, "emb": emb,
        "p": {
            "paper_top2": res.p_minus_paper,
            "paper_assigned": nan if fa.degenerate else fa.p_minus(u_assigned),
            "paper_insample": literal.p_minus_paper,
            "mixture": mix,
        },
        "degenerate": {"paper_top2": res.fit.degenerate, "paper_assigned": fa.degenerate,
                       "paper_insample": literal.fit.degenerate, "mixture": mix_info["degenerate"]},
        "info": {"faces": int(len(lab)), "identities": int(np.unique(truth).size), "clusters": int(lab.max() + 1),
                 "singletons": int(np.sum(g["singleton"])), "wrong_rate": float(gt["wrong"].mean()),
                 "outlier_rate": float(gt["outlier"].mean()), "split_rate": float(gt["split"].mean()),
                 "wrong_rate_singletons": float(gt["wrong"][g["singleton"]].mean()) if g["singleton"].any() else None,
                 "cluster_seconds": round(t_cl, 2), "uncertainty_seconds": round(t_u, 2),
                 "softmax_top1_own": res.report.get("train_accuracy")},
    }
    print(name, json.dumps(d["info"]), flush=True)
    return d


def inner_folds(ids: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of each face, by identity (a random permutation of the identities dealt round-robin)."""
    classes = np.unique(ids)
    perm = np.random.default_rng(seed).permutation(classes)
    fold_of = dict(zip(perm.tolist(), (np.arange(perm.size) % k).tolist()))
    return np.array([fold_of[i] for i in ids.tolist()])


def choose_calibrator(pairs: list) -> tuple[dict, list]:
    """Feature set and L2 per model part by log loss pooled over the inner folds' validation sets."""
    rows = []
    best = {}
    for part, sets, rows_mask in (("member", MEMBER_SETS, lambda s: s["g"]["size"] > 1),
                                  ("singleton", SINGLETON_SETS, lambda s: s["g"]["size"] == 1)):
        for (set_name, feats), l2 in itertools.product(sets.items(), L2):
            ps, ys = [], []
            for fit_set, val_set in pairs:
                mf, mv = rows_mask(fit_set), rows_mask(val_set)
                x = design(fit_set["g"], feats, mf)
                coef, b = fit_logistic(x, fit_set["wrong"][mf], l2=l2)
                bounds = np.stack([x.min(0), x.max(0)], axis=1).tolist()
                ps.append(LogisticPart(feats, coef, b, bounds).predict(val_set["g"], mv))
                ys.append(val_set["wrong"][mv])
            p, y = np.concatenate(ps), np.concatenate(ys)
            r = {"part": part, "features": set_name, "l2": l2, "val_logloss": logloss(p, y),
                 "val_ap": average_precision(p, y), "val_base_rate": float(y.mean()), "val_faces": int(y.size),
                 "val_wrong": int(y.sum())}
            rows.append(r)
            print("select", r, flush=True)
            if part not in best or r["val_logloss"] < best[part]["val_logloss"]:
                best[part] = r
    return best, rows


def choose_baselines(pairs: list) -> tuple[dict, list]:
    """Each baseline keeps its natural direction (smaller cluster, farther from the leave-one-out centroid, smaller
    top-2 margin = more suspect); the LOO distance a singleton gets (0: ranked last, 1: ranked first) is chosen by AP
    pooled over the inner folds' validation sets."""
    rows, chosen = [], {}
    y = np.concatenate([v["wrong"] for _, v in pairs])
    for s_loo in (0.0, 1.0):
        bs = [baseline_scores(v["g"], v["g"]["margin"], singleton_loo=s_loo) for _, v in pairs]
        for name in BASELINES:
            if name != "loo_distance" and s_loo == 1.0:
                continue
            ap = average_precision(np.concatenate([b[name] for b in bs]), y)
            r = {"baseline": name, "sign": 1, "singleton_loo": s_loo if name == "loo_distance" else None,
                 "val_ap": ap}
            rows.append(r)
            if name not in chosen or ap > chosen[name]["val_ap"]:
                chosen[name] = r
    return chosen, rows


def baseline_values(d: dict, chosen: dict) -> dict:
    out = {}
    for name, c in chosen.items():
        b = baseline_scores(d["g"], d["g"]["margin"], singleton_loo=c["singleton_loo"] or 0.0)
        out[name] = c["sign"] * b[name]
    return out


def choose_priority(vals: list, p_vals: list) -> tuple[dict, list]:
    """Rule and merge weight by cluster AP pooled over the inner folds' validation sets."""
    truth = np.concatenate([cluster_truth(v["labels"], v["wrong"]) for v in vals])
    rows = []
    for rule, w in itertools.product(PRIORITY_RULES, MERGE_WEIGHTS):
        pr = np.concatenate([cluster_priority(v["labels"], p, v["emb"], rule=rule, merge_weight=w,
                                              merge_floor=MERGE_FLOOR) for v, p in zip(vals, p_vals)])
        rows.append({"rule": rule, "merge_weight": w, "merge_floor": MERGE_FLOOR,
                     "val_cluster_ap": average_precision(pr, truth), "val_base_rate": float(truth.mean())})
    best = max(rows, key=lambda r: r["val_cluster_ap"])
    return best, rows


def priority_report(d: dict, p: np.ndarray, prio_cfg: dict) -> dict:
    lab, wrong = d["labels"], d["wrong"]
    truth = cluster_truth(lab, wrong)
    sizes = np.bincount(lab).astype(float)
    wrong_per = np.bincount(lab, weights=wrong.astype(float))
    scores = {
        "priority (chosen)": cluster_priority(lab, p, d["emb"], rule=prio_cfg["rule"],
                                              merge_weight=prio_cfg["merge_weight"],
                                              merge_floor=prio_cfg["merge_floor"]),
        "expected wrong faces (sum p-)": cluster_priority(lab, p, rule="expected_wrong"),
        "baseline: larger cluster first": sizes,
        "baseline: smaller cluster first": -sizes,
        "baseline: nearest-cluster similarity": nearest_cluster_similarity(d["emb"], lab),
    }
    out = {}
    top = max(1, int(round(0.1 * len(truth))))
    for k, s in scores.items():
        s = np.nan_to_num(s, nan=-np.inf)
        order = np.argsort(-s, kind="stable")[:top]
        out[k] = {"cluster_ap": average_precision(np.where(np.isfinite(s), s, -1e9), truth),
                  "wrong_faces_in_top10pct_clusters": float(wrong_per[order].sum() / max(wrong.sum(), 1))}
    out["_base_rate"] = float(truth.mean())
    out["_clusters"] = int(len(truth))
    return out


def evaluate(d: dict, cal: Calibrator, chosen_b: dict, platt: dict, prio_cfg: dict) -> dict:
    p = dict(d["p"])
    p["calibrated"] = cal.p_minus(d["g"])
    wrong = d["wrong"]
    rows = {}
    b = baseline_values(d, chosen_b)
    for name in PROBABILISTIC + BASELINES:
        if name in BASELINES:
            s = b[name]
            coef, b0 = platt[name]
            prob = 1.0 / (1.0 + np.exp(-np.clip(s * coef[0] + b0, -50, 50)))
        else:
            s = prob = p[name]
        if not np.isfinite(s).all():
            rows[name] = {"degenerate": d["degenerate"].get(name) or "nan"}
            continue
        r = {**ap_report(s, wrong)}
        if prob is not None:
            r["calibration"] = calibration_table(prob, wrong)
            r["mean_predicted"] = float(np.mean(prob))
            r["right_faces_with_p_over_half"] = float(np.mean(prob[~wrong] > 0.5))
        sg = d["g"]["singleton"]
        if sg.any() and (~sg).any() and wrong[sg].any() and wrong[~sg].any():
            r["ap_members"] = average_precision(s[~sg], wrong[~sg])
            r["ap_singletons"] = average_precision(s[sg], wrong[sg])
        prec, rec, _ = precision_recall(s, wrong)
        keep = np.unique(np.linspace(0, len(rec) - 1, min(len(rec), 200)).astype(int))
        r["pr_curve"] = {"precision": prec[keep].round(4).tolist(), "recall": rec[keep].round(4).tolist()}
        rows[name] = r
    best_b = max(BASELINES, key=lambda k: rows[k].get("ap", -1))
    cal_r = rows["calibrated"]
    verdict = {
        "best_baseline": best_b,
        "best_baseline_ap": rows[best_b]["ap"],
        "calibrated_ap": cal_r["ap"],
        "ap_ratio": cal_r["ap"] / rows[best_b]["ap"],
        "ranking_met": bool(cal_r["ap"] >= CLEAR_MARGIN * rows[best_b]["ap"]),
        "best_baseline_is_perfect": bool(rows[best_b]["ap"] >= 1.0 - 1e-12),
        "members_only": {k: rows[k].get("ap_members") for k in ("calibrated",) + BASELINES},
        "calibration_max_deviation": cal_r["calibration"]["max_deviation"],
        "worst_bin": max((b for b in cal_r["calibration"]["bins"] if b["count"] >= 30),
                         key=lambda b: b["deviation"], default=None),
        "calibration_met": bool(cal_r["calibration"]["max_deviation"] <= MAX_CAL_DEV),
    }
    return {"info": d["info"], "scores": rows, "verdict": verdict,
            "priority": priority_report(d, p["calibrated"], prio_cfg)}


def run(args) -> dict:
    torch.set_num_threads(2)
    lfw = load_features(FEATURES / "lfw_sface.npz")
    glint = load_features(FEATURES / "glint_sface.npz")
    ids, _ = lfw.label_ids()
    train_mask = split_identities(ids, 0.5, SEED)
    emb_tr, y_tr = lfw.embeddings[train_mask], ids[train_mask]
    folds = inner_folds(y_tr, INNER_FOLDS, SEED + 1)
    pairs = []
    for f in range(INNER_FOLDS):
        pairs.append((prepare(f"inner-fit {f}", emb_tr[folds != f], y_tr[folds != f]),
                      prepare(f"inner-val {f}", emb_tr[folds == f], y_tr[folds == f])))
    sets = {name: d for pair in pairs for name, d in ((pair[0]["name"], pair[0]), (pair[1]["name"], pair[1]))}
    best, cal_rows = choose_calibrator(pairs)
    chosen_b, base_rows = choose_baselines(pairs)
    # priority rule: calibrated p- fitted on each inner-fit set, applied to its inner-val set
    p_vals = []
    for fit_set, val_set in pairs:
        cal_f = fit_calibrator(fit_set["g"], fit_set["wrong"], MEMBER_SETS[best["member"]["features"]],
                               SINGLETON_SETS[best["singleton"]["features"]], l2=best["member"]["l2"],
                               singleton_l2=best["singleton"]["l2"])
        p_vals.append(cal_f.p_minus(val_set["g"]))
    vals = [v for _, v in pairs]
    y_val = np.concatenate([v["wrong"] for v in vals])
    p_val = np.concatenate(p_vals)
    inner_val_cal = {"ap": ap_report(p_val, y_val), "calibration": calibration_table(p_val, y_val)}
    prio_best, prio_rows = choose_priority(vals, p_vals)
    prio_cfg = {k: prio_best[k] for k in ("rule", "merge_weight", "merge_floor")}

    # final calibrator: whole training half
    train = prepare("lfw-train", emb_tr, y_tr)
    meta = {
        "trained_on": f"LFW training half (identities split_identities(ids, 0.5, seed={SEED}) as in "
                      f"bench/clustering_quality.py), {train['info']['faces']} faces, clustered with "
                      f"{DEFAULT_METHOD} (default settings); ground truth pipeline.uncertainty.wrongly_clustered",
        "selection": {"member": best["member"], "singleton": best["singleton"],
                      "how": f"log loss pooled over an inner split ({INNER_FOLDS}-fold by identity, seed {SEED + 1}) "
                             "of the training half"},
        "priority": prio_cfg,
        "softmax": "SoftmaxConfig() defaults: cross_fit=5 stratified, 2 epochs, prototype init",
        "written_by": "bench/uncertainty.py",
    }
    cal = fit_calibrator(train["g"], train["wrong"], MEMBER_SETS[best["member"]["features"]],
                         SINGLETON_SETS[best["singleton"]["features"]], l2=best["member"]["l2"],
                         singleton_l2=best["singleton"]["l2"], meta=meta)
    cal.save(CALIBRATION_PATH)
    # Platt maps for the baselines (whole training half): (coef, intercept) of a one-feature logistic
    b_train = baseline_values(train, chosen_b)
    platt = {name: fit_logistic(b_train[name][:, None], train["wrong"], l2=1e-4) for name in BASELINES}
    results = {}
    for name, emb, truth in (("lfw-test", lfw.embeddings[~train_mask], ids[~train_mask]),
                             ("glint", glint.embeddings, glint.label_ids()[0])):
        d = prepare(name, emb, truth)
        results[name] = evaluate(d, cal, chosen_b, platt, prio_cfg)
        v = results[name]["verdict"]
        print(name, json.dumps(v), flush=True)
    # training half itself (where the calibrator was fitted): in-sample, for reference only
    results["lfw-train (fitted here)"] = evaluate(train, cal, chosen_b, platt, prio_cfg)
    return {
        "benchmark": "uncertainty",
        "command": "FACECURATE_CACHE=<cache> .venv/bin/python bench/uncertainty.py",
        "protocol": __doc__,
        "clusterer": DEFAULT_METHOD,
        "sets": {k: v["info"] for k, v in sets.items()},
        "selection": {"calibrator": cal_rows, "chosen_calibrator": best, "baselines": base_rows,
                      "chosen_baselines": chosen_b, "priority": prio_rows, "chosen_priority": prio_best,
                      "inner_val_calibrated": inner_val_cal},
        "calibrator": cal.to_dict(),
        "results": results,
        "criteria": {"clearly_better": f"AP >= {CLEAR_MARGIN} x best baseline AP",
                     "calibrated": f"max |mean predicted - observed| <= {MAX_CAL_DEV} over calibration bins with "
                                   ">= 30 faces"},
        "machine": facts(torch_threads=torch.get_num_threads()),
    }


def fmt(v, nd=3):
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def write_md(out: dict, path: Path) -> None:
    L = ["# Clustering uncertainty p- on real faces: ranking and calibration", "",
         f"Command: `{out['command']}`  ", f"Machine: {out['machine']}.", "",
         "## Protocol", "",
         "- LFW identities split in halves by seed 0 as in bench/clustering_quality.py; the **training half** is split "
         "again by identity into 3 inner folds (seed 1): each fold in turn is inner-val, the other two inner-fit. "
         "**Every setting below was chosen on inner-fit -> inner-val only, pooled over the 3 folds**: the "
         "calibrator's features and L2 strength (log loss), the singleton value of the leave-one-out-distance "
         "baseline (AP), and the cluster-priority rule and merge weight (cluster AP). The chosen calibrator "
         "was then refitted on the whole training half and shipped as `pipeline/uncertainty/calibration.json`.",
         f"- Clusters: the default clusterer ({out['clusterer']}, default settings), each set clustered on its own. "
         "Wrong = outlier (not its cluster's majority identity) or split (in a cluster that is not the largest of "
         "its majority identity).",
         "- The LFW test half and glint-sample were used for nothing but the tables below. The training-half rows are "
         "in-sample (the calibrator was fitted there) and are shown for reference only.",
         "- Baselines are monotone-mapped to probabilities by a one-feature logistic fit on the training half, so they "
         "have calibration tables too; their AP is that of the raw score.",
         f"- Done when: the calibrated p- AP is at least {CLEAR_MARGIN:.2f} x the best baseline's on both sets "
         f"('clearly better'), and every calibration bin with >= 30 faces is within {MAX_CAL_DEV} of its observed "
         "wrong rate.", ""]
    L += ["Disclosure (a reading, by the author of this script): the protocol was revised once after a first run whose "
          "test-set tables had been seen. That run used a single 2/3 : 1/3 inner split (its inner-val held 2 wrong faces "
          "in clusters of >= 2, too few to choose anything; now 3 folds), a Newton fit without step control (it "
          "diverged at small L2; now backtracking), and let each baseline's direction be chosen on the inner split "
          "(it picked inverted directions; now fixed natural directions). Candidate feature sets and grids were not "
          "changed. Its test numbers were: calibrated p- AP 0.338 (LFW test) / 0.566 (glint), calibration max "
          "deviation 0.099 / 0.004. After the second run the fitted models were made to clip their inputs to the "
          "range seen in training: the chosen singleton model is quadratic in the nearest-cluster cosine, fitted on "
          "cosines in [0.2, 0.6], and without clipping it turned upwards below 0.32 (p- near 1 for a face far from "
          "every cluster, where no training face lies). Second run's test numbers: AP 0.326 / 0.307, calibration "
          "0.059 / 0.008.", ""]
    L += ["## Sets", "", "| set | faces | identities | clusters | singletons | wrong % | outlier % | split % | "
          "wrong % among singletons |", "|---|---|---|---|---|---|---|---|---|"]
    allinfo = dict(out["sets"])
    allinfo.update({k: v["info"] for k, v in out["results"].items()})
    for k, i in allinfo.items():
        L.append(f"| {k} | {i['faces']} | {i['identities']} | {i['clusters']} | {i['singletons']} | "
                 f"{100 * i['wrong_rate']:.2f} | {100 * i['outlier_rate']:.2f} | {100 * i['split_rate']:.2f} | "
                 f"{fmt(100 * i['wrong_rate_singletons'] if i['wrong_rate_singletons'] is not None else None, 2)} |")
    for set_name, r in out["results"].items():
        L += ["", f"## {set_name}", "",
              "| score | AP | base rate | AP members / singletons | mean predicted | right faces with p > 0.5 | "
              "calibration max dev. (bins >= 30) | ECE |", "|---|---|---|---|---|---|---|---|"]
        for name, s in r["scores"].items():
            if "degenerate" in s:
                L.append(f"| {SCORE_NAMES[name]} | degenerate ({s['degenerate']}) | | | | | | |")
                continue
            cal = s.get("calibration")
            L.append(f"| {SCORE_NAMES[name]} | **{s['ap']:.3f}** | {s['base_rate']:.3f} | "
                     f"{fmt(s.get('ap_members'))} / {fmt(s.get('ap_singletons'))} | {fmt(s.get('mean_predicted'))} | "
                     f"{fmt(s.get('right_faces_with_p_over_half'))} | {fmt(cal['max_deviation']) if cal else '-'} | "
                     f"{fmt(cal['ece']) if cal else '-'} |")
        for name in ("calibrated", "paper_top2", "mixture"):
            s = r["scores"][name]
            if "calibration" not in s:
                continue
            L += ["", f"Calibration, {SCORE_NAMES[name]}:", "",
                  "| p- bin | faces | mean predicted | observed wrong rate | deviation |", "|---|---|---|---|---|"]
            for b in s["calibration"]["bins"]:
                L.append(f"| [{b['lo']:.2f}, {b['hi']:.2f}) | {b['count']} | {b['mean_predicted']:.3f} | "
                         f"{b['observed']:.3f} | {b['deviation']:.3f} |")
        pr = r["priority"]
        L += ["", f"Cluster review priority ({pr['_clusters']} clusters, {100 * pr['_base_rate']:.2f} % hold a "
              "wrong face):", "", "| cluster score | cluster AP | share of wrong faces in the top 10 % of clusters |",
              "|---|---|---|"]
        for k, v in pr.items():
            if not k.startswith("_"):
                L.append(f"| {k} | {v['cluster_ap']:.3f} | {v['wrong_faces_in_top10pct_clusters']:.3f} |")
    sel = out["selection"]
    L += ["", "## Selection on the inner split (these numbers were used to pick)", "",
          "| model part | features | L2 | inner-val log loss | inner-val AP | base rate | wrong / faces |",
          "|---|---|---|---|---|---|---|"]
    for r in sel["calibrator"]:
        mark = " (chosen)" if r == sel["chosen_calibrator"][r["part"]] else ""
        L.append(f"| {r['part']} | {r['features']}{mark} | {r['l2']:g} | {r['val_logloss']:.4f} | {r['val_ap']:.3f} "
                 f"| {r['val_base_rate']:.4f} | {r['val_wrong']} / {r['val_faces']} |")
    L += ["", "Baselines keep their natural direction (smaller cluster / farther from the leave-one-out centroid / "
          "smaller top-2 margin = more suspect); the LOO distance of singletons was chosen by inner-val AP: " + "; ".join(
        f"{k}" + (f": singleton LOO distance {v['singleton_loo']}" if v["singleton_loo"]
                                       is not None else "") + f" (AP {v['val_ap']:.3f})"
        for k, v in sel["chosen_baselines"].items()) + ".", "",
        "| priority rule | merge weight | inner-val cluster AP |", "|---|---|---|"]
    for r in sel["priority"]:
        L.append(f"| {r['rule']} | {r['merge_weight']} | {r['val_cluster_ap']:.3f} |")
    c = sel["chosen_priority"]
    iv = sel["inner_val_calibrated"]
    L += ["", f"Chosen priority: rule `{c['rule']}`, merge weight {c['merge_weight']} (floor {c['merge_floor']}). "
          f"Calibrated p- on inner-val (fitted on inner-fit, pooled over the folds): AP {iv['ap']['ap']:.3f} (base {iv['ap']['base_rate']:.3f}), "
          f"calibration max deviation {fmt(iv['calibration']['max_deviation'])}.", ""]
    L += ["## Verdict (computed)", ""]
    for set_name in ("lfw-test", "glint"):
        v = out["results"][set_name]["verdict"]
        L.append(f"- **{set_name}**: calibrated p- AP {v['calibrated_ap']:.3f} vs best baseline "
                 f"({SCORE_NAMES[v['best_baseline']]}) {v['best_baseline_ap']:.3f}, ratio {v['ap_ratio']:.2f} -> "
                 f"ranking criterion {'MET' if v['ranking_met'] else 'NOT MET'}; calibration max deviation "
                 f"{fmt(v['calibration_max_deviation'])} -> calibration criterion "
                 f"{'MET' if v['calibration_met'] else 'NOT MET'}.")
    L += ["", "Readings computed from the tables:"]
    for set_name in ("lfw-test", "glint"):
        v = out["results"][set_name]["verdict"]
        mo = v["members_only"]
        bm = max(BASELINES, key=lambda k: -1 if mo[k] is None else mo[k])
        if mo["calibrated"] is not None and mo[bm] is not None:
            L.append(f"- {set_name}, faces in clusters of >= 2 only: calibrated p- AP {mo['calibrated']:.3f}, best "
                     f"baseline ({SCORE_NAMES[bm]}) {mo[bm]:.3f}"
                     + ((" -- among members p- does not beat it clearly"
                         + ("; its overall lead on this set comes from scoring singletons by design."
                            if v["ranking_met"] else ".")) if mo["calibrated"] < CLEAR_MARGIN * mo[bm] else "."))
        if v["best_baseline_is_perfect"]:
            L.append(f"- {set_name}: {SCORE_NAMES[v['best_baseline']]} has AP 1.000 here (every wrongly clustered face "
                     "sits in a smaller cluster than every right one), so no score can be 'clearly better' on this set.")
        wb = v["worst_bin"]
        if wb is not None and not v["calibration_met"]:
            L.append(f"- {set_name}: worst calibration bin [{wb['lo']:.2f}, {wb['hi']:.2f}): {wb['count']} faces, "
                     f"predicted {wb['mean_predicted']:.3f}, observed {wb['observed']:.3f} (binomial s.e. at the "
                     f"prediction {wb['stderr']:.3f}).")
    allmet = all(out["results"][s]["verdict"][k] for s in ("lfw-test", "glint")
                 for k in ("ranking_met", "calibration_met"))
    L += ["", f"'Done when' of issue 11 (first half): **{'met' if allmet else 'not met'}**.", ""]
    path.write_text("\n".join(L) + "\n")


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = ("lfw-test", "glint")
    fig, axes = plt.subplots(2, 2, figsize=(12, 10))
    for j, s in enumerate(sets):
        r = out["results"][s]["scores"]
        ax = axes[0, j]
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for name in ("calibrated", "mixture", "paper_top2", "paper_assigned"):
            if "calibration" not in r[name]:
                continue
            b = r[name]["calibration"]["bins"]
            ax.plot([x["mean_predicted"] for x in b], [x["observed"] for x in b], marker="o", label=SCORE_NAMES[name])
        ax.set_title(f"{s}: reliability (predicted p- vs observed wrong rate)")
        ax.set_xlabel("mean predicted p- in bin")
        ax.set_ylabel("observed wrong rate")
        ax.legend(fontsize=7)
        ax = axes[1, j]
        for name in ("calibrated", "mixture", "paper_top2") + BASELINES:
            if "pr_curve" not in r[name]:
                continue
            c = r[name]["pr_curve"]
            ax.plot(c["recall"], c["precision"], label=f"{SCORE_NAMES[name]} (AP {r[name]['ap']:.3f})")
        ax.axhline(r["calibrated"]["base_rate"], color="grey", lw=0.8, ls="--")
        ax.set_title(f"{s}: precision-recall, wrongly clustered faces")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--md-only", action="store_true", help="rewrite the .md and .png from the .json")
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    jpath = RESULTS / "uncertainty.json"
    out = json.loads(jpath.read_text()) if args.md_only else run(args)
    jpath.write_text(json.dumps(out, indent=1) + "\n")
    write_md(out, RESULTS / "uncertainty.md")
    plot(out, RESULTS / "uncertainty.png")
    print("wrote bench/results/uncertainty.{json,md,png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
