"""The low-resolution LFW retraining loop through the product itself (issue 15, item 1).

    nice -n 5 .venv/bin/python bench/retrain_app_loop.py      # writes bench/results/retrain_app_loop.{json,md}

``bench/retrain_domain.py`` chooses the recipe in-process on the functions the app's stages call; this
script runs the same domain through the product as a staff user would, with nothing chosen here:

* a fresh embedded product (SQLite and the filesystem broker under ``bench/out/retrain_app_loop/var``) and
  its two real Celery workers (queues ``default`` and ``gpu``, as ``bin/run`` starts them);
* the domain of ``bench/retrain_domain_data.py`` (``DomainConfig()``: LFW crops at 16 px, identity split,
  seed 0) written as PNG folders under the import root, one folder per person;
* REST calls (DRF's ``APIClient`` in this process, token of a staff user): ``POST /api/datasets/`` (aligned
  datasets: clean labeled people; the unlabeled target faces; the test people as a labeled evaluation set;
  the target faces once more with their names, for the upper bound), ``POST .../import/``, ``POST /api/runs/``
  (defaults, ``truth_from_folders`` so the run's quality is known), ``POST /api/retrainings/`` with the
  product's defaults and ``eval_datasets`` = the test people;
* rows: ``defaults`` (the run's clusters as they came out), ``reviewed`` (after the simulated annotator
  worked the run's review queue through the review services, ``--review-actions`` decisions), ``labeled_only``
  (no run), ``true_labels`` (the target faces with their names, no run: the upper bound) and ``two_rounds``
  (what a user does next with the ``defaults`` row's version: a new run clustered by it, ``"recognizer"``,
  then a retraining from it, ``"parent"``, on that run; its parent column is the first round's version).

Every number in a row is what the retraining job itself measured and stored (``job.result.metrics``): the
test people are the ``eval_datasets`` benchmark (TAR@1e-3 of parent and new version on every pair of them),
clean LFW pairs the ``lfw_pairs`` benchmark, the verdict the product's guard. The product holds out 20 % of
the labeled identities and 20 % of the run's clusters for its guard; the in-process bench trains on all of
them, so its rows and these differ by that.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT_ROOT = ROOT / "bench" / "out"  # each results name gets its own product under it
ROWS = ("defaults", "two_rounds", "reviewed", "labeled_only", "true_labels")
DONE = {"succeeded", "failed", "cancelled"}


def product_env(out: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECURATE_") or k in (
        "FACECURATE_CACHE", "FACECURATE_SHARED_DATA")}
    env.update({"FACECURATE_VAR_DIR": str(out / "var"), "FACECURATE_SECRET_KEY": "retrain-app-loop-bench",
                "DJANGO_SETTINGS_MODULE": "facecurate.settings"})
    return env


def setup_django(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    os.environ.clear()
    os.environ.update(product_env(out))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def start_workers(out: Path) -> list[subprocess.Popen]:
    procs = []
    for queue in ("default", "gpu"):
        log = open(out / f"worker-{queue}.log", "w")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "facecurate", "worker", "-Q", queue, "--pool", "solo",
             "-n", f"bench-{queue}@%h", "-l", "info"], cwd=ROOT, env=product_env(out), stdout=log,
            stderr=subprocess.STDOUT))
    return procs


def write_domain(eval_group: str) -> dict:
    """The domain's crops as PNG folders under the import root (``eval_group``: the people scored, ``test``
    or ``val``); returns what was written."""
    from django.conf import settings
    from PIL import Image

    from bench.retrain_domain_cache import split_groups
    from bench.retrain_domain_data import DomainConfig, split_identities

    cfg = DomainConfig()
    split = split_identities(cfg)
    groups, _ = split_groups(cfg, ("labeled", "train", eval_group))
    facts = {"config": cfg.__dict__, "split": split.facts(), "folders": {}}
    for group, folder in (("labeled", "labeled"), ("train", "target"), (eval_group, eval_group)):
        crops, names, paths = groups[group]
        for rel, bgr in zip(paths, crops):
            dest = Path(settings.IMPORT_ROOT) / folder / (rel.rsplit(".", 1)[0] + ".png")
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1])).save(dest)
        asked = sum(map(len, getattr(split, group).values()))
        facts["folders"][folder] = {"images": len(paths), "people": len(set(names)), "no_face": asked - len(paths)}
    return facts


class Api:
    def __init__(self) -> None:
        from rest_framework.test import APIClient

        from facecurate.accounts.roles import create_user

        _, token = create_user("bench-staff", role="staff", password="bench-password-1")
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    def post(self, url: str, data: dict, want: int = 202) -> dict:
        r = self.client.post(url, data, format="json")
        if r.status_code != want:
            raise SystemExit(f"POST {url} {data} -> {r.status_code}: {r.content[:600]!r}")
        return r.json()

    def get(self, url: str) -> dict:
        r = self.client.get(url)
        if r.status_code != 200:
            raise SystemExit(f"GET {url} -> {r.status_code}: {r.content[:600]!r}")
        return r.json()

    def wait(self, job_id: str, what: str, limit_s: float = 7200) -> dict:
        t0, last = time.monotonic(), None
        while time.monotonic() - t0 < limit_s:
            job = self.get(f"/api/jobs/{job_id}/")
            line = f"{what}: {job['state']} {job.get('stage')} {job.get('progress')}"
            if line != last:
                print(f"[{time.monotonic() - t0:6.0f} s] {line}", flush=True)
                last = line
            if job["state"] in DONE:
                if job["state"] != "succeeded":
                    raise SystemExit(f"{what}: job {job_id} {job['state']}: {job.get('error')}")
                job["wall_s"] = round(time.monotonic() - t0, 1)
                return job
            time.sleep(3)
        raise SystemExit(f"{what}: job {job_id} did not end in {limit_s} s")

    def dataset(self, name: str, kind: str, folder: str) -> int:
        ds = self.post("/api/datasets/", {"name": name, "kind": kind, "aligned": True}, want=201)
        job = self.post(f"/api/datasets/{ds['id']}/import/", {"path": folder})
        self.wait(job["job"], f"import {name}")
        return ds["id"]


def run_pipeline(api: Api, target: int, labeled: int, recognizer: int | None = None) -> dict:
    extra = {} if recognizer is None else {"recognizer": recognizer}
    run = api.post("/api/runs/", {"unlabeled_dataset": target, "labeled_datasets": [labeled],
                                  "truth_from_folders": True, **extra})
    job = api.wait(run["job"]["id"], "pipeline run")
    run = api.get(f"/api/runs/{run['id']}/")
    return {"id": run["id"], "wall_s": job["wall_s"], "counts": run["counts"], "metrics": _quality(run["metrics"]),
            "method": run["method"]}


def _quality(metrics: dict) -> dict:
    """The run's clustering quality against the folders' names (the store stage's ``metrics.clustering``)."""
    keep = ("pairwise_precision", "pairwise_recall", "pairwise_f", "bcubed_f")
    return {k: v for k, v in ((metrics or {}).get("clustering") or {}).items() if k in keep}


def simulated_review(run_id: int, actions: int) -> dict:
    """The simulated annotator works the shipped review queue (``gain``) through the review services; its
    decisions stay (unlike ``manage.py simulate_review``, which puts the run back)."""
    from facecurate.accounts.roles import create_user
    from facecurate.runs.models import PipelineRun
    from facecurate.runs.services.simulate import Annotator, Quality

    run = PipelineRun.objects.get(pk=run_id)
    user, _ = create_user("simulated-annotator", role="annotator", token=False)
    quality = Quality(run)
    t0 = time.monotonic()
    trace = Annotator(run, user, quality, max_actions=actions).work("gain")
    return {"actions": len(trace.actions), "stopped": trace.stopped, "wall_s": round(time.monotonic() - t0, 1),
            "pairwise_f_before": round(trace.pairwise_f[0], 4), "pairwise_f_after": round(trace.pairwise_f[-1], 4)}


def retrain(api: Api, name: str, labeled: list[int], runs: list[int], test: int, options: dict) -> dict:
    before = [round(x, 2) for x in os.getloadavg()]
    r = api.post("/api/retrainings/", {"labeled_datasets": labeled, "runs": runs, "eval_datasets": [test], **options})
    job = api.wait(r["id"], f"retraining {name}")
    res = job["result"] or {}
    m = res.get("metrics") or {}
    version = res.get("version")
    detail = api.get(f"/api/recognizers/{version}/") if version else {}
    parent = str(detail.get("parent"))

    def pick(bench: str, key: str, who: str):
        v = (m.get(bench) or {}).get(parent if who == "parent" else str(version)) or {}
        return v.get(key)
    row = {"name": name, "wall_s": job["wall_s"], "verdict": res.get("verdict"), "version": version,
           "load_before": before, "load_after": [round(x, 2) for x in os.getloadavg()],
           "training_set": {k: (res.get("training_set") or {}).get(k) for k in ("kept", "classes", "num_classes",
                                                                                  "run_faces", "labeled_faces")},
           "metrics": m}
    for who in ("parent", "new"):
        row[who] = {"test_tar@1e-3": pick("eval_datasets", "tar@far=0.001", who),
                    "test_tar@1e-4": pick("eval_datasets", "tar@far=0.0001", who),
                    "test_rank1": pick("eval_datasets", "rank1", who),
                    "lfw_pairs": pick("lfw_pairs", "lfw_mean", who),
                    "held_out_pseudo_tar@1e-3": pick("held_out_pseudo", "tar@far=0.001", who)}
    print({k: row[k] for k in ("name", "wall_s", "verdict", "parent", "new")}, flush=True)
    return row


def second_round(api: Api, first: dict, target: int, labeled: int, test: int, options: dict) -> dict:
    """The ``two_rounds`` row: the first round's version clusters the target faces again, then a retraining
    from it trains on that run."""
    run = run_pipeline(api, target, labeled, recognizer=first["version"])
    row = retrain(api, "two_rounds", [labeled], [run["id"]], test, {**options, "parent": first["version"]})
    row["run"] = run
    return row


def against_bar(rows: dict) -> dict:
    """The issue's bar, computed from the rows the jobs measured (None where a row was not run)."""
    d, t = rows.get("defaults"), rows.get("true_labels")
    if d is None:
        return {}
    parent, new = d["parent"]["test_tar@1e-3"], d["new"]["test_tar@1e-3"]
    out = {"parent_test_tar@1e-3": parent, "defaults_test_tar@1e-3": new, "reaches_0.70": new >= 0.70,
           "gain": round(new - parent, 4)}
    if t is not None:
        share = (new - parent) / max(t["new"]["test_tar@1e-3"] - parent, 1e-9)
        out.update({"true_labels_test_tar@1e-3": t["new"]["test_tar@1e-3"], "share_of_true_label_gain": round(share, 3),
                    "share_at_least_0.70": share >= 0.70})
    if d["parent"]["lfw_pairs"] is not None and d["new"]["lfw_pairs"] is not None:
        lost = 100 * (d["parent"]["lfw_pairs"] - d["new"]["lfw_pairs"])
        out.update({"lfw_pairs_points_lost": round(lost, 3), "lfw_within_0.3": lost <= 0.3})
    two = rows.get("two_rounds")
    if two is not None:  # against the first round's parent, the shipped recognizer
        out.update({"two_rounds_test_tar@1e-3": two["new"]["test_tar@1e-3"],
                    "two_rounds_reaches_0.70": two["new"]["test_tar@1e-3"] >= 0.70})
        if t is not None:
            share = (two["new"]["test_tar@1e-3"] - parent) / max(t["new"]["test_tar@1e-3"] - parent, 1e-9)
            out["two_rounds_share_of_true_label_gain"] = round(share, 3)
        if two["new"]["lfw_pairs"] is not None and d["parent"]["lfw_pairs"] is not None:
            out["two_rounds_lfw_pairs_points_lost"] = round(100 * (d["parent"]["lfw_pairs"] - two["new"]["lfw_pairs"]), 3)
    return out


def _kept(ts: dict) -> str:
    kept = ts.get("kept") or {}
    return " + ".join(f"{v} {k}" for k, v in kept.items() if v) if isinstance(kept, dict) else str(kept)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def markdown(res: dict) -> str:
    f = res["domain"]["folders"]
    run = res["run"]
    lines = [f"<!-- written by `{res['command']}` -->", "", f"Command: `{res['command']}`  ",
             f"Machine: {res['machine']}", "", "# The retraining loop through the product (low-resolution LFW, 16 px)", "",
             "A fresh embedded product and its two Celery workers, driven through the REST API as a staff user "
             "(see the script's docstring). Folders imported: " + ", ".join(
                 f"{k} {v['images']} faces of {v['people']} people" for k, v in f.items()) + ".", "",
             f"Pipeline run (defaults, {run['method']}): {run['wall_s']} s, overlap {run['counts']}, clusters "
             f"{run['metrics']}.", ""]
    if "two_rounds" in res["rows"]:
        r = res["rows"]["two_rounds"]["run"]
        lines += [f"Second run (`two_rounds`: clustered by the `defaults` row's version): {r['wall_s']} s, overlap "
                  f"{r['counts']}, clusters {r['metrics']}.", ""]
    if res.get("review"):
        r = res["review"]
        lines += [f"Simulated review (the shipped queue, `gain`, through the review services): {r['actions']} "
                  f"actions ({r['stopped']}), pairwise F {r['pairwise_f_before']} -> {r['pairwise_f_after']}, "
                  f"{r['wall_s']} s.", ""]
    who = ("the **test** people (never trained on, never used to choose)" if res["eval"] == "test" else
           "the **val** people (never trained on; the people settings are chosen on)")
    lines += [f"Each retraining: `POST /api/retrainings/` with the product's defaults, over them {res['options'] or 'nothing'}, "
              f"and `eval_datasets` = {who}. Every number below is what the job stored; the `test_*` keys of the "
              f"JSON hold the {res['eval']} people's numbers.", "",
              f"| row | {res['eval']} TAR@1e-3 parent -> new | TAR@1e-4 | rank-1 | clean LFW pairs % | held-out clusters "
              "TAR@1e-3 | verdict | training faces / classes | wall s | load before -> after |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["rows"].items():
        p, n, ts = r["parent"], r["new"], r["training_set"]
        lines.append(
            f"| {name} | {_pct(p['test_tar@1e-3'])} -> **{_pct(n['test_tar@1e-3'])}** | {_pct(p['test_tar@1e-4'])} -> "
            f"{_pct(n['test_tar@1e-4'])} | {_pct(p['test_rank1'])} -> {_pct(n['test_rank1'])} | "
            f"{_pct(p['lfw_pairs'])} -> {_pct(n['lfw_pairs'])} | {_pct(p['held_out_pseudo_tar@1e-3'])} -> "
            f"{_pct(n['held_out_pseudo_tar@1e-3'])} | {r['verdict']} | {_kept(ts)} / {ts.get('num_classes')} | "
            f"{r['wall_s']} | {r['load_before']} -> {r['load_after']} |")
    pseudo = {k: r["new"]["test_tar@1e-3"] for k, r in res["rows"].items() if k.startswith("defaults")}
    if len(pseudo) > 1:
        best = max(pseudo, key=lambda k: pseudo[k])
        lines += ["", f"Best pseudo-label row on these ({res['eval']}) people by TAR@1e-3: **{best}** "
                      f"({pseudo[best]:.4f})" + (" (chosen here: val people only)." if res["eval"] == "val" else
                                                   " (test people: reported, not for choosing).")]
    if res["eval"] == "test":
        lines += ["", "## Against the issue's bar (computed from the rows)", ""]
        lines += [f"- {k}: {v}" for k, v in res["bar"].items()] or ["- the defaults row was not run"]
    lines += ["", f"Total {res['total_s']} s. Where the load average is above 2, other work shared the 2 cores: "
              "times are upper bounds."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", nargs="*", choices=ROWS, default=list(ROWS), help="rows to run (none: --candidates only)")
    ap.add_argument("--review-actions", type=int, default=300, help="decisions of the simulated annotator")
    ap.add_argument("--eval", choices=("test", "val"), default="test",
                    help="the people scored: test (reported) or val (to choose settings on)")
    ap.add_argument("--options", type=json.loads, default={},
                    help="retraining options over the product's defaults, as JSON (every row)")
    ap.add_argument("--candidates", nargs="*", type=json.loads, default=[],
                    help="more pseudo-label rows, each with these options (JSON) over --options: to choose on val")
    ap.add_argument("--name", default="retrain_app_loop", help="results file name under bench/results/")
    ap.add_argument("--no-write", action="store_true", help="print the results, write no results file")
    args = ap.parse_args()
    out = OUT_ROOT / args.name
    t0 = time.monotonic()
    setup_django(out)
    from bench.harness import command, facts, write_results

    domain = write_domain(args.eval)
    workers = start_workers(out)
    try:
        api = Api()
        labeled = api.dataset("lfw-labeled", "labeled", "labeled")
        target = api.dataset("lowres-target", "unlabeled", "target")
        test = api.dataset(f"lowres-{args.eval}-people", "labeled", args.eval)
        run = run_pipeline(api, target, labeled)
        rows, review = {}, None
        if "defaults" in args.rows or "two_rounds" in args.rows:
            rows["defaults"] = retrain(api, "defaults", [labeled], [run["id"]], test, args.options)
        if "two_rounds" in args.rows:
            rows["two_rounds"] = second_round(api, rows["defaults"], target, labeled, test, args.options)
        if "true_labels" in args.rows:
            named = api.dataset("lowres-target-named", "labeled", "target")
            rows["true_labels"] = retrain(api, "true_labels", [labeled, named], [], test, args.options)
        if "labeled_only" in args.rows:
            rows["labeled_only"] = retrain(api, "labeled_only", [labeled], [], test, args.options)
        for cand in args.candidates:
            label = "defaults + " + json.dumps(cand, sort_keys=True)
            rows[label] = retrain(api, label, [labeled], [run["id"]], test, {**args.options, **cand})
        if "reviewed" in args.rows:
            review = simulated_review(run["id"], args.review_actions)
            rows["reviewed"] = retrain(api, "reviewed", [labeled], [run["id"]], test, args.options)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
    res = {"command": command(), "machine": facts(), "eval": args.eval, "options": args.options, "domain": domain,
           "run": run, "review": review, "rows": rows,
           "bar": against_bar(rows) if args.eval == "test" else None, "total_s": round(time.monotonic() - t0, 1)}
    if args.no_write:
        print(markdown(res))
        return
    write_results(args.name, res, markdown(res))


if __name__ == "__main__":
    main()
