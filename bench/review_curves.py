"""Review curves on hard dev sets (issue 16): pairwise F against actions for each queue order, the greedy
oracle beside them, from the real ``manage.py simulate_review`` (the real review services) on runs built
from each dev set as the app would cluster it (Infomap, p- as the uncertainty stage computes it).

Dev sets (bench/review_devsets.py): glint-sample, and glint-sample downscaled to 20 px and 16 px and
back. The runs live in their own database (``fc_review_bench``, created and migrated here) and files
under /tmp/fc_review_bench. The ``paper`` order is left out: these runs carry no uncertainty artifact.

    nice -n 10 .venv/bin/python -m bench.review_curves --max-actions 600
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from io import StringIO
from pathlib import Path

import numpy as np

ORDERS = ["gain", "priority", "size", "random"]
TARGETS = [0.95, 0.99]


def _django() -> None:
    os.environ["FACECURATE_DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/fc_review_bench"
    os.environ["FACECURATE_BROKER_URL"] = "redis://127.0.0.1:6379/12"
    os.environ.setdefault("FACECURATE_VAR_DIR", "/tmp/fc_review_bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "facecurate.settings")
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname='fc_review_bench'").fetchone():
            conn.execute("create database fc_review_bench")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_run(name: str, d: dict):
    """A finished run over dev set ``name`` with the given clustering and p- (as the store stage writes it)."""
    from facecurate.datasets.services.from_features import dataset_from_features
    from facecurate.jobs.models import Job
    from facecurate.recognition.services.versions import active_version
    from facecurate.runs.models import Cluster, PipelineRun, RunFace
    from facecurate.runs.services.review import refresh_stats

    from bench import review_devsets

    paths = np.load(review_devsets.lowres_path(int(name[5:])) if name != "glint" else
                    review_devsets.CACHE / "glint_sface.npz")["paths"]
    ds = dataset_from_features(f"{name}-{os.getpid()}", paths, d["emb"], labels=d["people"], labeled=False)
    job = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, dataset=ds, state=Job.State.SUCCEEDED)
    run = PipelineRun.objects.create(job=job, unlabeled_dataset=ds, recognizer=active_version(),
                                     options={"truth_from_folders": True}, counts={"faces": len(paths)})
    clusters = {int(k): Cluster.objects.create(run=run, number=int(k)) for k in np.unique(d["labels"][d["labels"] >= 0])}
    faces = list(ds.faces.order_by("id").values_list("id", flat=True))
    RunFace.objects.bulk_create([
        RunFace(run=run, face_id=f, cluster=clusters.get(int(l)), original_cluster=clusters.get(int(l)),
                p_minus=float(p), overlap_state=0) for f, l, p in zip(faces, d["labels"], d["p"])], batch_size=2000)
    for c in clusters.values():
        refresh_stats(c)
        c.save()
    from facecurate.recognition.models import Artifact
    from facecurate.recognition.services import artifacts
    from facecurate.runs.services.stages import art_rel
    from pipeline.review.candidates import centroids

    k = int(d["labels"].max()) + 1
    artifacts.write_npz(art_rel(run, "centroids"), Artifact.Kind.CENTROIDS, job,
                        centroids=centroids(d["emb"], d["labels"], k))  # the cluster orders' merge suggestions
    return run


def curves_for(name: str, max_actions: int) -> dict:
    from django.core.management import call_command

    from bench.merge_queue import clustered
    from pipeline.clustering.metrics import pairwise_prf

    d = clustered(name)
    pp, pr, pf = pairwise_prf(d["truth"], d["labels"])
    run = make_run(name, d)
    out = StringIO()
    call_command("simulate_review", run.pk, order=ORDERS, targets=TARGETS, max_actions=max_actions, json=True,
                 stdout=out)
    run.refresh_from_db()
    sim = run.metrics["simulated_review"]
    return {"faces": int(len(d["labels"])), "people": int(d["truth"].max() + 1),
            "clusters": int(d["labels"].max() + 1), "start": {"precision": pp, "recall": pr, "f": pf},
            "summaries": json.loads(out.getvalue())["summaries"], "curves": sim["curves"]}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        for order, pts in r["curves"].items():
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=order, linestyle="--" if order == "oracle" else "-",
                    linewidth=2.5 if order == "gain" else 1.2)
        ax.axhline(0.99, color="grey", linewidth=0.6)
        ax.set_title(f"{name}: {r['faces']} faces, {r['people']} people")
        ax.set_xlabel("actions")
        ax.set_ylabel("pairwise F")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def markdown(results: dict, max_actions: int) -> str:
    lines = ["# Review curves on hard dev sets (issue 16)", "",
             f"`simulate_review` (the real review services), at most {max_actions} actions per order; "
             "oracle: the perfect greedy annotator (best merge or clean-up each step, no confirms, no 'no's).",
             "Curves: review_curves.png.", ""]
    for name, r in results.items():
        s = r["start"]
        lines += [f"## {name}: {r['faces']} faces, {r['people']} people, {r['clusters']} clusters "
                  f"(start: pairwise F {s['f']:.3f}, precision {s['precision']:.3f}, recall {s['recall']:.3f})", "",
                  "| order | actions to F 0.95 | actions to F 0.99 | final F | actions | stopped |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for order, x in r["summaries"].items():
            lines.append(f"| {order} | {x.get('actions_to_pairwise_f_0.95')} | {x.get('actions_to_pairwise_f_0.99')} | "
                         f"{x['final_pairwise_f']:.4f} | {x['actions']} | {x.get('stopped', '')} |")
        o, g = r["summaries"]["oracle"].get("actions_to_pairwise_f_0.99"), r["summaries"]["gain"].get(
            "actions_to_pairwise_f_0.99")
        ratio = f"{g / o:.2f}x the oracle" if o and g is not None else "n/a"
        lines += ["", f"Shipped queue (gain) to F 0.99: {ratio}.", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", default=["glint", "glint20", "glint16"])
    ap.add_argument("--max-actions", type=int, default=600)
    args = ap.parse_args()
    _django()
    from bench import harness

    with harness.timed() as t:
        results = {name: curves_for(name, args.max_actions) for name in args.sets}
    plot(results, harness.RESULTS / "review_curves.png")
    harness.write_results("review_curves", {"max_actions": args.max_actions, "orders": ORDERS, "sets": results,
                                            "seconds": t.seconds}, markdown(results, args.max_actions))


if __name__ == "__main__":
    sys.exit(main())
