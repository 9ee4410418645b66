"""Pages at scale (issue 18, item 3): storing a run, cluster suggestions, the datasets list and the
training-set builder, new code beside the code on main, on PostgreSQL and SQLite.

    nice -n 10 .venv/bin/python bench/pages_scale.py --faces 100000       # both backends (minutes)
    nice -n 10 .venv/bin/python bench/pages_scale.py --faces 1000000 --backends postgres --no-old-store

For each backend a child process on a fresh database fills one unlabeled dataset with ``--faces``
synthetic faces (rows only) and clustered synthetic unit embeddings saved as 16 embedding files (as an
embedded dataset has), plus a labeled dataset of 2,000 identities; writes a run's artifacts
(``--faces``/10 clusters) and times:

* the store stage: new (summaries from one sort, COPY on PostgreSQL) and, with ``--old-store``, main's
  (a mask per cluster, bulk_create), each on its own run;
* suggestions for 40 random clusters: new (member index) and main's (``load_embeddings`` of the
  dataset per request), warm (each after one call that fills the caches), p50/p95;
* the datasets list (GET /api/datasets/ in process) and the counts alone, new (maintained row) and
  main's (grouped counts);

then, without a database, the training-set builder (pipeline.retraining) at ``--faces`` faces in
``--faces``/10 clusters and at 1M faces in 100k clusters. Writes bench/results/pages_scale.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import harness  # noqa: E402

OUT = ROOT / "bench" / "out" / "pages_scale"
PG_DB = "fc_scale_bench_pages"


def _old_module(path: str, package: str) -> types.ModuleType:
    """A module as it is on main (git show), imported under its package so relative imports work."""
    src = subprocess.run(["git", "show", f"main:{path}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    mod = types.ModuleType(f"{package}._main_{Path(path).stem}")
    mod.__package__ = package
    exec(compile(src, f"main:{path}", "exec"), mod.__dict__)
    return mod


def _pct(xs: list[float]) -> dict:
    a = np.asarray(xs) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "n": len(xs)}


def _fill(n: int) -> tuple[object, object, float]:
    from django.db import transaction

    from facecurate.datasets.models import Dataset, Face, Identity, Image

    t0 = time.perf_counter()
    ds = Dataset.objects.create(name="synthetic-unlabeled", kind="unlabeled")
    for s in range(0, n, 20_000):
        with transaction.atomic():
            imgs = Image.objects.bulk_create([
                Image(dataset=ds, source_name=f"u/{i}.jpg", file=f"x/{i}.jpg", sha256=f"u-{i}", size_bytes=1,
                      status="ok", num_faces=1) for i in range(s, min(s + 20_000, n))], batch_size=5000)
            Face.objects.bulk_create([Face(image=im, dataset=ds, index=0, is_primary=True, crop=f"c/{im.pk}.png")
                                      for im in imgs], batch_size=5000)
    lab = Dataset.objects.create(name="synthetic-labeled", kind="labeled")
    idents = Identity.objects.bulk_create([Identity(dataset=lab, name=f"person {i}") for i in range(2000)])
    imgs = Image.objects.bulk_create([Image(dataset=lab, identity=p, source_name=f"l/{p.pk}.jpg", file=f"l/{p.pk}",
                                            sha256=f"l-{p.pk}", size_bytes=1, status="ok", num_faces=1)
                                      for p in idents])
    Face.objects.bulk_create([Face(image=im, dataset=lab, identity=im.identity, index=0, is_primary=True,
                                   crop=f"c/l{im.pk}.png") for im in imgs])
    return ds, lab, time.perf_counter() - t0


def _embeddings(ds, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from facecurate.recognition.services.embeddings import save_embeddings
    from facecurate.recognition.services.versions import active_version

    rng = np.random.default_rng(seed)
    ids = np.asarray(ds.faces.order_by("id").values_list("id", flat=True), np.int64)
    n = len(ids)
    centers = rng.standard_normal((k, 128)).astype(np.float32)
    labels = np.sort(rng.integers(0, k, n))
    labels[:k] = np.arange(k)
    emb = centers[labels] + 0.6 * rng.standard_normal((n, 128)).astype(np.float32) / np.sqrt(128) * \
        np.linalg.norm(centers[labels], axis=1, keepdims=True)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    for part in range(16):
        sl = slice(part * n // 16, (part + 1) * n // 16)
        save_embeddings(ds.pk, active_version(), ids[sl].tolist(), emb[sl], name=f"chunk-{part}")
    return ids, np.sort(labels), emb


def _run(ds, lab, ids, labels, emb, seed: int):
    from facecurate.jobs.models import Job
    from facecurate.recognition.models import Artifact
    from facecurate.recognition.services import artifacts
    from facecurate.recognition.services.versions import active_version
    from facecurate.runs.models import PipelineRun
    from facecurate.runs.services.member_index import write_member_index
    from facecurate.runs.services.stages import art_rel

    rng = np.random.default_rng(seed)
    n, k = len(ids), int(labels.max()) + 1
    job = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, dataset=ds, state="succeeded")
    run = PipelineRun.objects.create(job=job, unlabeled_dataset=ds, recognizer=active_version(),
                                     uncertainty_report={"priority": {"rule": "max"}})
    run.labeled_datasets.set([lab])
    w = lambda name, kind, **a: artifacts.write_npz(art_rel(run, name), kind, job, **a)  # noqa: E731
    w("overlap", Artifact.Kind.OVERLAP, face_ids=ids, state=np.zeros(n, np.int8),
      max_logit=rng.random(n).astype(np.float32), predicted=np.full(n, -1, np.int64),
      posterior=np.full(n, np.nan, np.float32))
    w("clusters", Artifact.Kind.CLUSTERS, face_ids=ids, labels=labels, carried_from=np.full(n, -1, np.int64))
    w("uncertainty", Artifact.Kind.UNCERTAINTY, face_ids=ids, p_minus=rng.beta(0.5, 8, n).astype(np.float32),
      margin=rng.random(n).astype(np.float32))
    cent = np.zeros((k, emb.shape[1]), np.float32)
    np.add.at(cent, labels, emb)
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    w("centroids", Artifact.Kind.CENTROIDS, centroids=cent)
    lab_ids = np.asarray(lab.identities.order_by("id").values_list("id", flat=True), np.int64)
    means = rng.standard_normal((len(lab_ids), emb.shape[1])).astype(np.float32)
    w("class_means", Artifact.Kind.CLASS_MEANS, identity_ids=lab_ids,
      means=means / np.linalg.norm(means, axis=1, keepdims=True))
    with harness.timed() as t:
        write_member_index(run, ids, emb)
    return run, t.seconds


def _time_store(store_fn, run) -> float:
    with harness.timed() as t:
        store_fn(None, run)
    return t.seconds


def _suggestions(run, fn, repeats: int = 40) -> dict:
    from facecurate.runs.models import Cluster

    rng = np.random.default_rng(1)
    pks = list(Cluster.objects.filter(run=run).values_list("pk", flat=True))
    picks = [Cluster.objects.select_related("run__recognizer").get(pk=int(p)) for p in rng.choice(pks, repeats + 1)]
    with harness.timed() as first:
        fn(picks[0])
    times = []
    for c in picks[1:]:
        with harness.timed() as t:
            fn(c)
        times.append(t.seconds)
    return {"first_call_s": round(first.seconds, 3), **_pct(times)}


def _datasets_list(repeats: int = 40) -> dict:
    from rest_framework.test import APIClient

    from facecurate.accounts.roles import create_user
    from facecurate.datasets.models import Dataset
    from facecurate.datasets.services.counts import count_rows, dataset_counts

    user, _ = create_user("bench", role="staff")
    client = APIClient()
    client.force_authenticate(user)
    ids = list(Dataset.objects.values_list("pk", flat=True))
    assert dataset_counts(ids) == count_rows(ids), "maintained counts disagree with the rows"
    out = {}
    for name, fn in (("api_new", lambda: client.get("/api/datasets/")), ("counts_new", lambda: dataset_counts(ids)),
                     ("counts_main", lambda: count_rows(ids))):
        fn()
        times = []
        for _ in range(repeats):
            with harness.timed() as t:
                r = fn()
            times.append(t.seconds)
            if name == "api_new":
                assert r.status_code == 200
        out[name] = _pct(times)
    return out


def child(args) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from facecurate.runs.services import store as store_new

    call_command("migrate", verbosity=0)
    res: dict = {"backend": connection.vendor, "faces": args.faces, "clusters": args.faces // 10,
                 "load_average_at_start": os.getloadavg()}
    ds, lab, res["fill_s"] = _fill(args.faces)
    with harness.timed() as t:
        ids, labels, emb = _embeddings(ds, args.faces // 10)
    res["embeddings_s"] = t.seconds
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    run, res["member_index_s"] = _run(ds, lab, ids, labels, emb, 2)
    res["store_new_s"] = _time_store(store_new.store_stage, run)
    if args.old_store:
        store_main = _old_module("facecurate/runs/services/store.py", "facecurate.runs.services")
        run_old, _ = _run(ds, lab, ids, labels, emb, 2)
        res["store_main_s"] = _time_store(store_main.store_stage, run_old)
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    from facecurate.runs.services import queries

    queries_main = _old_module("facecurate/runs/services/queries.py", "facecurate.runs.services")
    res["suggestions_new"] = _suggestions(run, queries.suggestions)
    res["suggestions_main"] = _suggestions(run, queries_main.suggestions, repeats=args.old_repeats)
    res["datasets_list"] = _datasets_list()
    res["peak_rss_mib"] = harness.peak_rss_mib()
    res["load_average_at_end"] = os.getloadavg()
    print("RESULT " + json.dumps(res, default=float), flush=True)


def training_set(n: int, k: int, seed: int = 0) -> dict:
    from pipeline.retraining.training_set import UnlabeledFaces, build_training_set

    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(0, k, n))
    labels[:k] = np.arange(k)
    labels = rng.permutation(labels)
    u = UnlabeledFaces(run_id=np.ones(n, np.int64), face_id=np.arange(n), cluster_id=labels,
                       cluster_confirmed=(labels % 2) == 0, cluster_assigned_identity=np.full(n, -1),
                       overlap_state=np.zeros(n, np.int64), predicted_identity=np.full(n, -1),
                       p_minus=rng.beta(0.5, 8, n))
    with harness.timed() as t:
        ts = build_training_set(np.repeat(np.arange(2000), 5), u)
    return {"faces": n, "clusters": k, "seconds": round(t.seconds, 2), "rows": int(len(ts.row)),
            "peak_rss_mib": harness.peak_rss_mib(), "load_average_1min": round(os.getloadavg()[0], 2)}


def _env(backend: str) -> dict:
    var = OUT / f"var-{backend}"
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    env = {**os.environ, "FACECURATE_VAR_DIR": str(var), "FACECURATE_SECRET_KEY": "bench",
           "DJANGO_SETTINGS_MODULE": "facecurate.settings", "FACECURATE_LOG_LEVEL": "WARNING"}
    env.pop("FACECURATE_BROKER_URL", None)
    env.pop("FACECURATE_DATABASE_URL", None)
    if backend == "postgres":
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
            c.execute(f"CREATE DATABASE {PG_DB}")
        env["FACECURATE_DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{PG_DB}"
    return env


def run_child(script: str, backend: str, args: list[str]) -> dict:
    """Run ``script --child ARGS`` on a fresh database of ``backend``; its ``RESULT {...}`` line as a dict."""
    cmd = [sys.executable, script, "--child", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(backend), capture_output=True, text=True, check=False)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        sys.exit(f"{backend} child failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(line[0][7:])
    print(json.dumps(out), flush=True)
    return out


def _md(res: dict) -> str:
    lines = ["# Pages at scale: store, suggestions, datasets list, training set", "",
             "Synthetic rows and clustered synthetic embeddings (16 embedding files per dataset); a run with "
             "faces/10 clusters. 'main' is the code on main (git show main:...), run in the same process on the "
             "same data. Warm: each timing series starts after one call that fills the per-process caches.", "",
             "| backend | faces | clusters | fill s | member index s | store new s | store main s | "
             "suggestions new p50/p95 ms | suggestions main p50/p95 ms | datasets list p50/p95 ms | "
             "counts new / main p50 ms | load avg start -> end | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b in res["backends"]:
        sn, sm, dl = b["suggestions_new"], b["suggestions_main"], b["datasets_list"]
        lines.append(
            f"| {b['backend']} | {b['faces']:,} | {b['clusters']:,} | {b['fill_s']:.1f} | {b['member_index_s']:.2f} | "
            f"{b['store_new_s']:.2f} | {format(b['store_main_s'], '.2f') if 'store_main_s' in b else '-'} | {sn['p50_ms']} / {sn['p95_ms']} | "
            f"{sm['p50_ms']} / {sm['p95_ms']} | {dl['api_new']['p50_ms']} / {dl['api_new']['p95_ms']} | "
            f"{dl['counts_new']['p50_ms']} / {dl['counts_main']['p50_ms']} | "
            f"{b['load_average_at_start'][0]:.1f} -> {b['load_average_at_end'][0]:.1f} | {b['peak_rss_mib']:.0f} |")
    lines += ["", "Training-set builder (pipeline.retraining.build_training_set, arrays only, no database):", "",
              "| faces | clusters | seconds | training rows | peak RSS MiB | load average (1 min) after |",
              "|---|---|---|---|---|---|"]
    for t in res["training_set"]:
        lines.append(f"| {t['faces']:,} | {t['clusters']:,} | {t['seconds']} | {t['rows']:,} | {t['peak_rss_mib']:.0f} | "
                     f"{t.get('load_average_1min', '-')} |")
    lines += ["", "The machine is shared (2 cores, other work running): the load averages are in the table; "
              "compare new and main within a row, not across runs."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--backends", default="postgres,sqlite")
    ap.add_argument("--old-store", action=argparse.BooleanOptionalAction, default=True,
                    help="also time main's store stage (a mask per cluster: minutes at 1M)")
    ap.add_argument("--old-repeats", type=int, default=10, help="suggestion calls timed for main's code")
    ap.add_argument("--name", default="pages_scale", help="results name")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    res = {"backends": [], "training_set": []}
    for backend in filter(None, args.backends.split(",")):  # "": the training-set builder only
        res["backends"].append(run_child(str(Path(__file__).resolve()), backend, [
            "--faces", str(args.faces), "--old-repeats", str(args.old_repeats),
            "--old-store" if args.old_store else "--no-old-store"]))
    for n, k in sorted({(args.faces, args.faces // 10), (1_000_000, 100_000)}):
        res["training_set"].append(training_set(n, k))
        print(res["training_set"][-1], flush=True)
    harness.write_results(args.name, res, _md(res))


if __name__ == "__main__":
    main()
