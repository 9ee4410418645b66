"""Review curves on hard dev sets (issue 16): pairwise F against actions for each queue order, the greedy
oracle beside them, from the real ``manage.py simulate_review`` (the real review services) on runs built
from each dev set as the app would cluster it (Infomap, p- as the uncertainty stage computes it).

Reported sets (bench/review_devsets.py), none of which the merge model or any queue setting saw: the
held-out LFW identities (people with >= 6 photos, split by a seeded hash of the name) at 20 px and
16 px, and glint-sample at full resolution, 20 px and 16 px. The merge model (its coefficients, L2
strength and probability floor) was fitted on the LFW training identities only (bench/merge_queue.py).
Per set the model's reliability table on the initial candidate pairs is reported. The runs live in their own database (``fc_review_bench``, created and migrated here) and files
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable by its path from the root, as its results say

ORDERS = ["gain", "priority", "size", "random"]
TARGETS = [0.95, 0.99]
STOP_AT = 0.99  # every order stops once it reaches the goal's F (the curves end there)


def _django(migrate: bool = True) -> None:
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

    if migrate:
        call_command("migrate", verbosity=0)


def make_run(name: str, d: dict):
    """A finished run over dev set ``name`` with the given clustering and p- (as the store stage writes it)."""
    from facecurate.datasets.services.from_features import dataset_from_features
    from facecurate.jobs.models import Job
    from facecurate.recognition.services.versions import active_version
    from facecurate.runs.models import Cluster, PipelineRun, RunFace
    from facecurate.runs.services.review import refresh_stats

    from bench import review_devsets

    paths = review_devsets.paths_of(name)
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


def _simulate(run, orders, max_actions: int) -> tuple[dict, dict]:
    from django.core.management import call_command

    out = StringIO()
    call_command("simulate_review", run.pk, order=list(orders), targets=TARGETS, max_actions=max_actions,
                 stop_at=STOP_AT, json=True, stdout=out)
    run.refresh_from_db()
    return json.loads(out.getvalue())["summaries"], run.metrics["simulated_review"]["curves"]


def curves_for(name: str, max_actions: int, orders=ORDERS) -> dict:
    """The shipped queue first; each other order then runs until it reaches F 0.99 or passes the queue's
    action count there (it cannot come first after that), or its pass ends, or ``max_actions``."""
    from bench.merge_queue import clustered, reliability_for
    from pipeline.clustering.metrics import pairwise_prf

    d = clustered(name)
    rel = reliability_for(name, d)
    pp, pr, pf = pairwise_prf(d["truth"], d["labels"])
    run = make_run(name, d)
    first = [o for o in orders if o == "gain"]
    summaries, curves = _simulate(run, first, max_actions) if first else ({}, {})
    g = summaries.get("gain", {}).get(f"actions_to_pairwise_f_{STOP_AT}")
    rest = [o for o in orders if o != "gain"]
    if rest:
        s2, c2 = _simulate(run, rest, max_actions if g is None else min(max_actions, g + 1))
        summaries, curves = {**summaries, **s2}, {**curves, **c2}
    if first and rest:  # the oracle of the first call ran to the limit the shipped queue had
        for key in ("oracle", "oracle_reject"):
            summaries[key], curves[key] = s2[key], c2[key]
    return {"faces": int(len(d["labels"])), "people": int(d["truth"].max() + 1),
            "clusters": int(d["labels"].max() + 1), "start": {"precision": pp, "recall": pr, "f": pf},
            "summaries": summaries, "curves": curves, "reliability": rel}


def _one(args) -> tuple[str, dict]:
    """One set in a worker process (its own Django setup and database connection)."""
    name, max_actions, orders = args
    _django(migrate=False)
    return name, curves_for(name, max_actions, orders)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        for order, pts in r["curves"].items():
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=order, linestyle="--" if order.startswith("oracle") else "-",
                    linewidth=2.5 if order == "gain" else 1.2)
        ax.axhline(0.99, color="grey", linewidth=0.6)
        ax.set_title(f"{name}: {r['faces']} faces, {r['people']} people")
        ax.set_xlabel("actions")
        ax.set_ylabel("pairwise F")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def goal(r: dict) -> dict:
    """Issue 16's goal on one set: the shipped queue reaches F 0.99, within 1.3x the oracle's actions,
    before every other order."""
    s = r["summaries"]
    g, o = s["gain"].get("actions_to_pairwise_f_0.99"), s["oracle"].get("actions_to_pairwise_f_0.99")
    others = [s[k].get("actions_to_pairwise_f_0.99") for k in s if k not in ("gain", "oracle", "oracle_reject")]
    if "gain" not in s:
        return {}
    first = g is not None and all(x is None or g < x for x in others)
    sooner = g is not None and all(x is None or g <= x for x in others)  # none reaches F 0.99 in fewer actions
    # every other order, the oracle too, runs to g + 1 actions only (curves_for): an oracle short of F 0.99
    # there needs more than g + 1, so the shipped queue is ahead of it (the oracle is greedy, not optimal)
    beaten = g is not None and o is None
    within = g is not None and (beaten or g <= 1.3 * max(o, 1))
    return {"gain": g, "oracle": o, "oracle_more_than": g + 1 if beaten else None,
            "ratio": g / max(o, 1) if g is not None and o is not None else None, "ratio_below_1": beaten,
            "within_1.3x": within, "before_every_other": first, "none_sooner": sooner, "met": within and first}


def _fitted() -> list[str]:
    from pipeline.review import merge_model
    from facecurate.runs.services.merge_queue import PLACE_K
    from pipeline.review.candidates import WHITEN_SHRINK
    from pipeline.review.gain import CLEAN_MIN

    m = merge_model.shipped()
    t = m.get("trained_on", {})
    per = ", ".join(f"{k} ({v.get('people')} people, {v.get('faces')} faces, {v['pairs']} pairs)"
                    for k, v in t.get("per_set", {}).items())
    return ["## Which data fitted what", "",
            f"- Merge model (logistic, features {', '.join(m['features'])}): fitted on {per}: "
            f"{t.get('split', '')}. L2 strength {m['l2']} chosen by log-loss on an inner split of those "
            f"identities; probability floor p_min = {m.get('p_min', 0.0):.3f} ({t.get('p_min_rule', '')}), "
            "on the same training pairs.",
            "- Queue settings (merge groups of up to 8 partners, order by expected pairs fixed per action, a "
            "cluster review changed or made paired again with its nearest clusters as they are now, once nothing "
            "above the probability floor is left each cluster of one face shown with its next nearest clusters "
            "past those answered no (up to 40 down), then the pairs "
            "under the probability floor and, once those are answered too, "
            "every cluster's next nearest ones, a rejected face offered its next nearest clusters past those "
            "answered no, faces a person placed, merged in or split off together counting as right in "
            "clean-ups, an unchanged cluster paired with the changed ones that came among its 10 nearest): fixed in "
            "code. Chosen on the training identities (lfw20_train, lfw16_train; since stop 27 also lfw20w_train, "
            "lfw16w_train, review_curves_train_wide.md; bench/review_queue_replay.py): "
            f"the clean-up floor (a cluster expected to hold under {CLEAN_MIN:g} wrong pair is not offered for "
            f"clean-up), the {PLACE_K} clusters a rejected face is shown with (3 and 5 tried) and, since stop 29, "
            f"the shrink {WHITEN_SHRINK:g} of the whitening every similarity of the queue is taken after (the faces "
            "whitened by the within-cluster scatter of the run's clusters as they are at each listing; 0.1, 0.3, "
            "1 and 3 tried, bench/results/review_queue_replay.md). "
            "No number was tuned on a reported set. One rule was found on one: the last resort's clean-ups "
            "of strays merged in with their cluster and of confirmed clusters changed since their confirm came "
            "from glint16, whose queue ran dry with strays left (it sets no number and changes nothing on the "
            "training sets, where the queue never runs dry); glint16's curve is not an untouched held-out result. "
            "Another was found on lfw16_test's tail (stop 27): its true singletons lay at rank 2 to 11 of their "
            "person's grown cluster and were no candidate at all, since only changed clusters were paired with "
            "their own nearest; the fix (an unchanged cluster paired with the changed ones now among its 10 "
            "nearest) sets no number and was measured on the training sets only, but lfw16_test's curve is not "
            "an untouched held-out result either. A third came from lfw16_test's tail too (stop 30): after action "
            "316 its queue spent 176 actions on pairs under the floor and small clean-ups for 20 pairs, while its "
            "lone faces' people lay at rank 11 to 45 of their nearest clusters; the lone faces' pass before the "
            "pairs under the floor (1 and 3 faces tried: the same counts) was measured on the training sets only, "
            "past F 0.99, where it begins (actions to F 0.995 on lfw16 / lfw20 / lfw16w_train: 402 / 251 / "
            "none in 649 before, 358 / 182 / 421 with it; bench/results/review_queue_replay.md).",
            "- p- is read as P(stray) for the clean-ups' gain (pipeline/review/stray_model.json, logistic on "
            "logit p- and log cluster size, fitted on the same training identities with up to 10 and up to 60 "
            "photos a person).",
            "- Reported below: the held-out LFW identities (lfw*_test) and glint-sample (glint, glint20, "
            "glint16); none was seen by the fit.", ""]


def _reliability(rel: dict) -> list[str]:
    fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
    rows = [f"| {r['bin'][0]:.2f}-{r['bin'][1]:.2f} | {r['pairs']} | {fmt(r['mean_p'])} | {fmt(r['observed'])} |"
            for r in rel["table"] if r["pairs"]]
    return [f"Reliability of the merge model on this set's initial candidate pairs ({rel['pairs']} pairs, "
            f"{rel['same']} same person, log-loss {rel['log_loss']:.3f}):", "",
            "| predicted | pairs | mean predicted | observed same |", "| --- | --- | --- | --- |", *rows, ""]


def markdown(results: dict, max_actions: int, name: str = "review_curves") -> str:
    lines = ["# Review curves on hard dev sets (issue 16)", "",
             f"`simulate_review` (the real review services), at most {max_actions} actions per order, each order "
             f"stopping at pairwise F {STOP_AT}; the shipped queue (gain) runs first and every other order at "
             "most one action past the gain's count to F 0.99 (it cannot come first after that). "
             "oracle: the perfect greedy annotator (best merge or clean-up per action, no confirms, no 'no's; "
             "one merge per action) with the simulated person's clean-up: each other person with at least two "
             "faces in a cluster split off together (one action each), the single strays rejected (one action). "
             "oracle_reject: the issue's first oracle, whose clean-up makes every stray a singleton in one "
             "action; the goal is judged against `oracle`, the person's own vocabulary. The shipped queue (gain) shows a cluster with its likely partners: one "
             "decision accepts the ones that are the same person (several merges) and records no for the rest; "
             "a rejected face with its likely clusters: one decision places it or records no for them all.",
             f"Curves: {name}.png.", "", *_fitted(), "## Goal per set (F 0.99 within 1.3x the oracle, before every other order)", "",
             "met: within 1.3x and before every other order (strictly). A set that starts so near F 0.99 that one "
             "action reaches it leaves no order a way to come first; 'no order sooner' says whether any other order "
             "reached F 0.99 in fewer actions than the shipped queue.", "",
             "| set | gain to 0.99 | oracle to 0.99 | ratio | within 1.3x | before every other order | no order sooner | met |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        g = goal(r)
        if not g:
            continue
        ratio = "< 1 (ahead of the oracle)" if g["ratio_below_1"] else "n/a" if g["ratio"] is None else f"{g['ratio']:.2f}"
        oracle = f"> {g['oracle_more_than']} (stopped there)" if g["oracle_more_than"] else g["oracle"]
        lines.append(f"| {name} | {g['gain']} | {oracle} | {ratio} | {g['within_1.3x']} | "
                     f"{g['before_every_other']} | {g['none_sooner']} | {'yes' if g['met'] else 'no'} |")
    lines.append("")
    for name, r in results.items():
        s = r["start"]
        lines += [f"## {name}: {r['faces']} faces, {r['people']} people, {r['clusters']} clusters "
                  f"(start: pairwise F {s['f']:.3f}, precision {s['precision']:.3f}, recall {s['recall']:.3f})", "",
                  "| order | actions to F 0.95 | actions to F 0.99 | final F | actions | stopped |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for order, x in r["summaries"].items():
            lines.append(f"| {order} | {x.get('actions_to_pairwise_f_0.95')} | {x.get('actions_to_pairwise_f_0.99')} | "
                         f"{x['final_pairwise_f']:.4f} | {x['actions']} | {x.get('stopped', '')} |")
        o = r["summaries"]["oracle"].get("actions_to_pairwise_f_0.99")
        g = r["summaries"].get("gain", {}).get("actions_to_pairwise_f_0.99")
        ratio = f"{g / o:.2f}x the oracle" if o and g is not None else \
            f"ahead of the oracle (short of F 0.99 after {g + 1} actions)" if g is not None else "n/a"
        lines += ["", f"Shipped queue (gain) to F 0.99: {ratio}.", "", *_reliability(r["reliability"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", default=["lfw20_test", "lfw16_test", "glint", "glint20", "glint16"])
    ap.add_argument("--max-actions", type=int, default=600)
    ap.add_argument("--orders", nargs="+", default=ORDERS)
    ap.add_argument("--name", default="review_curves", help="results name (review_curves_train: the training check)")
    ap.add_argument("--jobs", type=int, default=1, help="sets simulated at once, each in its own process")
    args = ap.parse_args()
    _django()
    from bench import harness

    with harness.timed() as t:
        work = [(name, args.max_actions, args.orders) for name in args.sets]
        if args.jobs > 1:
            import multiprocessing as mp
            from django.db import connections

            connections.close_all()
            with mp.get_context("spawn").Pool(args.jobs) as pool:
                done = dict(pool.map(_one, work, chunksize=1))
        else:
            done = dict(_one(w) for w in work)
        results = {name: done[name] for name in args.sets}
    plot(results, harness.RESULTS / f"{args.name}.png")
    from pipeline.review import merge_model

    model = {k: v for k, v in merge_model.shipped().items()}
    harness.write_results(args.name, {"max_actions": args.max_actions, "orders": args.orders, "stop_at": STOP_AT,
                                      "sets": results, "goal": {n: goal(r) for n, r in results.items()},
                                      "merge_model": model, "seconds": t.seconds},
                          markdown(results, args.max_actions, args.name))


if __name__ == "__main__":
    sys.exit(main())
