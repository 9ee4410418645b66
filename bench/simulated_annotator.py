"""A simulated annotator works the review queue of real runs, through the review service functions the
API calls (facecurate.runs.services.simulate), under four queue orders: the product's priority, the
paper's p- (same rule), cluster size, random. Quality (pairwise F, BCubed F) after every action.

    .venv/bin/python bench/simulated_annotator.py          # LFW test half and glint-sample (~10 min)

Sets (cached SFace features, Infomap clusters, the product's defaults):
- LFW test half: the identities of the test half of bench/clustering_quality.py's split (seed 0), as
  the unlabeled set, against the training half as the labeled set (no shared people);
- glint-sample, against a labeled LFW subset holding 9 of its 24 people (LFW identities with >= 20
  images plus the glint people with >= 4 LFW images), as in tests/app/test_runs_real_faces.py.
Nothing here is tuned: the priority rule and p- were chosen on an inner split of the LFW training half
(bench/uncertainty.py). Writes bench/results/simulated_annotator.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "out" / "simulated_annotator"
RESULTS = ROOT / "bench" / "results"
CACHE = Path(os.environ.get("FACECURATE_CACHE", ROOT / ".cache")) / "features"
GLINT_KNOWN = {"Daniel_Radcliffe", "Gwyneth_Paltrow", "Halle_Berry", "Kate_Winslet", "Keanu_Reeves",
               "Leonardo_DiCaprio", "Tom_Hanks"}


def _setup() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    os.environ.update({"FACECURATE_VAR_DIR": str(OUT / "var"), "FACECURATE_SECRET_KEY": "bench",
                       "DJANGO_SETTINGS_MODULE": "facecurate.settings", "FACECURATE_LOG_LEVEL": "WARNING"})
    for key in ("FACECURATE_DATABASE_URL", "FACECURATE_BROKER_URL"):
        os.environ.pop(key, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _features(name: str):
    from pipeline.features import load_features

    return load_features(CACHE / f"{name}_sface.npz")


def _run(user, unlabeled, labeled):
    from facecurate.jobs.runner import run_job
    from facecurate.runs.services.orchestrate import advance_work
    from facecurate.runs.services.start import start_run

    run = start_run(user, unlabeled, labeled, options={"truth_from_folders": True})
    t0 = time.perf_counter()
    job = run_job(run.job_id, advance_work)
    if job.state != "succeeded":
        raise SystemExit(f"run failed: {job.error}")
    run.refresh_from_db()
    return run, round(time.perf_counter() - t0, 1)


def _sets(user):
    from clustering_quality import split_identities

    from facecurate.datasets.services.from_features import dataset_from_features

    lfw, glint = _features("lfw"), _features("glint")
    test = ~split_identities(lfw.labels, 0.5, 0)
    lfw_test = dataset_from_features("lfw-test-half", lfw.paths[test], lfw.embeddings[test])
    lfw_train = dataset_from_features("lfw-train-half", lfw.paths[~test], lfw.embeddings[~test],
                                      labels=lfw.labels[~test], labeled=True)
    names, counts = np.unique(lfw.labels, return_counts=True)
    known = set(names[counts >= 20].tolist()) | GLINT_KNOWN
    rows = np.isin(lfw.labels, list(known))
    lfw_known = dataset_from_features("lfw-known", lfw.paths[rows], lfw.embeddings[rows], labels=lfw.labels[rows],
                                      labeled=True)
    glint_ds = dataset_from_features("glint-sample", glint.paths, glint.embeddings)
    return {"LFW test half": (lfw_test, [lfw_train]), "glint-sample": (glint_ds, [lfw_known])}


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(result["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.2))
    for ax, name in zip(np.atleast_1d(axes), sets):
        for order, tr in result["sets"][name]["traces"].items():
            ax.plot(np.arange(len(tr["pairwise_f"])), tr["pairwise_f"], label=order)
        ax.axhline(0.99, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{name}: simulated annotator")
        ax.set_xlabel("review actions")
        ax.set_ylabel("pairwise F of the labeling")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _md(result: dict) -> str:
    targets = result["targets"]
    keys = [f"actions_to_pairwise_f_{t}" for t in targets] + ["actions_to_half_the_gap"]
    heads = [f"actions to F {t}" for t in targets] + ["actions to half the gap to F 1"]
    lines = ["# A simulated annotator works the review queue", "", f"Command: `{result['command']}`  ",
             f"Machine: {json.dumps(result['machine'])}", "",
             "The annotator knows the ground truth and, for each cluster in queue order, rejects the faces that are "
             "not its majority person (one action), merges each suggested cluster (the 5 nearest, as the UI shows) "
             "of the same person (one action each), then assigns the cluster to its labeled identity when that is "
             "among the suggestions, else confirms it (one action). Every action goes through "
             "facecurate.runs.services.review, as the API's do. Quality is measured over the faces the run "
             "clustered; 'not reached' means not within the actions allowed.", ""]
    for name, s in result["sets"].items():
        lines += [f"## {name}", "", f"Run: {json.dumps(s['run'])}", "",
                  "| queue order | " + " | ".join(heads) + " | F after 100 | F after 500 | F at the end (actions) | "
                  "BCubed F at the end | clusters visited |", "|---" * (len(heads) + 6) + "|"]
        for order, summ in s["summaries"].items():
            cells = [str(summ[k]) if summ[k] is not None else "not reached" for k in keys]
            lines.append(f"| {order} | " + " | ".join(cells) + f" | {summ['pairwise_f_after_100']:.4f} | "
                         f"{summ['pairwise_f_after_500']:.4f} | {summ['final_pairwise_f']:.4f} ({summ['actions']}) | "
                         f"{summ['final_bcubed_f']:.4f} | {summ['clusters_visited']} |")
        best = "; ".join(f"{h}: {', '.join(v) if v else 'none'}" for h, v in zip(heads, s["best_order"].values()))
        lines += ["", f"Start: pairwise F {s['start_pairwise_f']:.4f}. Fewest actions ({best}).", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-actions", type=int, default=600)
    ap.add_argument("--targets", default="0.99,0.997", help="pairwise F levels to count actions to")
    args = ap.parse_args()
    _setup()
    from facecurate.accounts.roles import create_user
    from facecurate.runs.services.simulate import ORDERS, Annotator, Quality, reset_review
    from bench.harness import facts, write_results

    user, _ = create_user("simulated", role="annotator")
    targets = [float(t) for t in args.targets.split(",")]
    result = {"command": "bench/simulated_annotator.py " + " ".join(sys.argv[1:]), "targets": targets,
              "machine": facts(), "sets": {}}
    for name, (unlabeled, labeled) in _sets(user).items():
        run, secs = _run(user, unlabeled, labeled)
        quality = Quality(run)
        entry = {"run": {"seconds": secs, **run.counts, "metrics": run.metrics.get("clustering", {}).get("pairwise_f")},
                 "summaries": {}, "traces": {}}
        for order in ORDERS:
            reset_review(run)
            t0 = time.perf_counter()
            trace = Annotator(run, user, quality, max_actions=args.max_actions).work(order)
            entry["summaries"][order] = {**trace.summary(targets), "seconds": round(time.perf_counter() - t0, 1)}
            entry["traces"][order] = {"pairwise_f": [round(x, 5) for x in trace.pairwise_f],
                                      "bcubed_f": [round(x, 5) for x in trace.bcubed_f], "actions": trace.actions}
            print(name, order, entry["summaries"][order], flush=True)
        entry["start_pairwise_f"] = entry["traces"]["priority"]["pairwise_f"][0]
        entry["best_order"] = {}
        for key in [f"actions_to_pairwise_f_{t}" for t in targets] + ["actions_to_half_the_gap"]:
            ok = {o: s[key] for o, s in entry["summaries"].items() if s[key] is not None}
            entry["best_order"][key] = sorted(o for o in ok if ok[o] == min(ok.values())) if ok else None
        result["sets"][name] = entry
    write_results("simulated_annotator", result, _md(result))
    _plot(result, RESULTS / "simulated_annotator.png")
    print(_md(result))


if __name__ == "__main__":
    main()
