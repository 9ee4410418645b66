"""Recall fixes for Infomap (issue 16, item 5), side by side with Infomap on the same kNN graph.

Protocol (the same split as bench/clustering_quality.py): LFW identities split in halves at random
(seed 0). Every setting is chosen on the LFW training half only; the LFW test half and glint-sample are
only clustered with the chosen settings. One k=30 kNN graph per set, shared by every method.

Methods: ``infomap`` (shipped; similarity floor ``threshold``), and ``infomap-recall``
(pipeline/clustering/recall.py): shared-neighbour edge weights (``power``; 0 = plain cosine) at a
similarity floor ``threshold``, then singleton attachment (``attach_sim``, ``attach_margin``; None = off).
Selection: the best mean of pairwise F and BCubed F on the training half among settings whose pairwise
and BCubed precision are not below tuned Infomap's there (a recall fix must not buy recall with
precision); the unconstrained best is reported beside it.

    PYTHONPATH=. nice -n 10 .venv/bin/python bench/clustering_recall.py
writes bench/results/clustering_recall.{json,md}.
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.clustering_quality import FEATURES, K, objective, rounded, split_identities  # noqa: E402
from pipeline.clustering.infomap_edges import infomap_on_edges  # noqa: E402
from pipeline.clustering.knn import build_knn  # noqa: E402
from pipeline.clustering.metrics import evaluate_clustering  # noqa: E402
from pipeline.clustering.recall import attach_singletons, reweight_edges  # noqa: E402
from pipeline.features import load_features  # noqa: E402

INFOMAP_GRID = [0.35, 0.4, 0.45, 0.5, 0.55, 0.6]
THRESHOLDS = [0.3, 0.35, 0.4, 0.45, 0.5]
POWERS = [0.0, 1.0, 2.0]
ATTACH = [None] + [(s, m) for s in (0.35, 0.4, 0.45, 0.5) for m in (0.0, 0.05, 0.1)]
KEYS = ("pairwise_precision", "pairwise_recall", "pairwise_f", "bcubed_precision", "bcubed_recall", "bcubed_f",
        "clusters", "singletons")


def infomap_labels(g, threshold, power):
    src, dst, w = reweight_edges(g, threshold, power)
    lab = infomap_on_edges(g.n, src, dst, w)
    none = lab < 0
    lab[none] = lab.max(initial=-1) + 1 + np.arange(int(none.sum()))
    return np.unique(lab, return_inverse=True)[1].astype(np.int64)


def run_setting(emb, g, p):
    lab = infomap_labels(g, p["threshold"], p.get("power", 0.0))
    if p.get("attach_sim") is not None:
        lab = attach_singletons(lab, emb, g, attach_sim=p["attach_sim"], attach_margin=p["attach_margin"])
    return lab


def metrics(y, lab):
    r = evaluate_clustering(y, lab)
    return {k: r[k] for k in KEYS if k in r}


def main() -> None:
    import faiss

    faiss.omp_set_num_threads(2)
    lfw = load_features(FEATURES / os.environ.get("RECALL_DRY_RUN_LFW", "lfw_sface.npz"))  # (a code check only)
    glint = load_features(FEATURES / "glint_sface.npz")
    ids, _ = lfw.label_ids()
    tr = split_identities(ids, 0.5, 0)
    sets = {"train": (lfw.embeddings[tr], ids[tr]), "lfw-test": (lfw.embeddings[~tr], ids[~tr]),
            "glint": (glint.embeddings, glint.label_ids()[0])}
    graphs = {name: build_knn(e, K) for name, (e, _) in sets.items()}
    emb_tr, y_tr = sets["train"]
    g_tr = graphs["train"]

    tuning = []
    for t in INFOMAP_GRID:
        tuning.append({"method": "infomap", "params": {"threshold": t}, **rounded(metrics(y_tr, infomap_labels(g_tr, t, 0.0)))})
    base = max(tuning, key=objective)
    print("infomap tuned", base, flush=True)
    for t, pw in itertools.product(THRESHOLDS, POWERS):
        lab0 = infomap_labels(g_tr, t, pw)
        for att in ATTACH:
            p = {"threshold": t, "power": pw, "attach_sim": None if att is None else att[0],
                 "attach_margin": None if att is None else att[1]}
            lab = lab0 if att is None else attach_singletons(lab0, emb_tr, g_tr, attach_sim=att[0], attach_margin=att[1])
            row = {"method": "infomap-recall", "params": p, **rounded(metrics(y_tr, lab))}
            tuning.append(row)
        print(t, pw, row["pairwise_f"], row["bcubed_f"], flush=True)
    rec = [r for r in tuning if r["method"] == "infomap-recall"]
    ok = [r for r in rec if r["pairwise_precision"] >= base["pairwise_precision"]
          and r["bcubed_precision"] >= base["bcubed_precision"]]
    chosen = {"infomap": base["params"], "infomap-recall (precision kept)": max(ok, key=objective)["params"] if ok else None,
              "infomap-recall (best F, any precision)": max(rec, key=objective)["params"]}
    # the two steps alone, each at its best precision-keeping setting
    for name, sel in (("edge reweighting only", lambda r: r["params"]["attach_sim"] is None and r["params"]["power"] > 0),
                      ("singleton attachment only", lambda r: r["params"]["attach_sim"] is not None and r["params"]["power"] == 0)):
        cand = [r for r in ok if sel(r)]
        chosen[name] = max(cand, key=objective)["params"] if cand else None

    table = []
    for set_name, (emb, y) in sets.items():
        for name, p in chosen.items():
            if p is None:
                continue
            p = dict(p)
            t0 = time.perf_counter()
            lab = run_setting(emb, graphs[set_name], p)
            sec = time.perf_counter() - t0
            table.append({"set": set_name, "method": name, "setting": p, **rounded(metrics(y, lab)), "seconds": round(sec, 2)})
            print(set_name, name, p, table[-1]["pairwise_f"], table[-1]["bcubed_f"], flush=True)

    data = {"protocol": __doc__.split("\n\n")[1], "k": K, "seed": 0, "chosen": chosen, "table": table, "tuning": tuning,
            "sets": {n: {"faces": int(y.size), "identities": int(np.unique(y).size)} for n, (_, y) in sets.items()}}
    if os.environ.get("RECALL_DRY_RUN_LFW"):
        print(markdown(data)[:200])
        return
    harness.write_results("clustering_recall", data, markdown(data))


def markdown(d: dict) -> str:
    lines = ["# Recall fixes for Infomap (issue 16, item 5)", "", d["protocol"], "",
             "Settings chosen on the LFW training half: " + "; ".join(f"**{k}** {v}" for k, v in d["chosen"].items()), "",
             "| set | method | pairwise P | pairwise R | pairwise F | BCubed P | BCubed R | BCubed F | clusters | singletons | s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in d["table"]:
        lines.append(f"| {r['set']} | {r['method']} | {r['pairwise_precision']:.4f} | {r['pairwise_recall']:.4f} | "
                     f"{r['pairwise_f']:.4f} | {r['bcubed_precision']:.4f} | {r['bcubed_recall']:.4f} | {r['bcubed_f']:.4f} | "
                     f"{r.get('clusters', '')} | {r.get('singletons', '')} | {r['seconds']} |")
    kept = d["chosen"].get("infomap-recall (precision kept)")
    noop = kept is None or (kept.get("power") == 0 and kept.get("attach_sim") is None
                            and kept.get("threshold") == d["chosen"]["infomap"].get("threshold"))
    lines += ["", "## Conclusion", "",
              ("No setting of the recall fixes keeps tuned Infomap's pairwise and BCubed precision on the training half "
               "and raises its F: the precision-keeping choice is plain Infomap, so `DEFAULT_METHOD` stays `infomap`."
               if noop else "A precision-keeping setting beats Infomap on the training half: see the held-out rows above."),
              "Shared-neighbour edge weights (power > 0) lower pairwise recall sharply on the training half (see `tuning` "
              "in the JSON); singleton attachment buys a little recall with a little precision: LFW's singletons are mostly "
              "people with one photo (about 2,000 per half), so a clean set leaves little to attach."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
