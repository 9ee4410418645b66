"""One run end to end at scale (issue 18, item 4): a pipeline run's stages, the review pages and a
retraining set, on synthetic faces in the database, on PostgreSQL and on SQLite.

    nice -n 10 .venv/bin/python bench/scale_run.py --faces 1000000                 # both backends (about an hour)
    .venv/bin/python bench/scale_run.py --faces 20000 --name scale_run_small        # a quick look

For each backend a child process on a fresh database:

1. fills an unlabeled dataset with ``--faces`` synthetic faces (rows, as ingestion leaves them) and a labeled
   one of 2,000 identities x 5 faces, with embeddings saved as ingestion saves them (16 files per dataset).
   Features: ``--faces``/10 people (sizes from a geometric draw, mean 10), unit vectors = a person's centre
   plus noise (within-person cosine about 0.74, unrelated faces about 0); the labeled identities are
   min(1,000, people/10) of those people and new people for the rest (so about 1 % of the faces are of
   known people at 1M faces, 10 % at 100k);
2. runs the product's stage functions in order (``overlap_stage``, ``cluster_stage`` with the default
   method, ``uncertainty_stage``, ``store_stage``: everything a worker does after embedding), each timed,
   with the process's peak RSS after it;
3. opens the review pages in process (Django's test client, signed in, warm: each series after one call),
   for the first 40 clusters of the queue: the queue (HTML page and its API page), the cluster page (HTML),
   its faces and its suggestions; "cluster page" is the sum of those three requests, as if sent one after
   another (the browser sends the API calls side by side, so a page is quicker than this);
4. the datasets list (HTML home page and ``GET /api/datasets/``);
5. builds the retraining set from the run as a retraining job does (``retrain.gather`` + ``retrain.training_set``).

Writes bench/results/<name>.{json,md}. Times are wall-clock on this machine with the client in the same
process; the load average is recorded at the start and end of each backend.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import harness  # noqa: E402
from bench.pages_scale import _pct, run_child  # noqa: E402

LABELED_PEOPLE, LABELED_PER_PERSON, KNOWN_PEOPLE = 2000, 5, 1000
BATCH = 20_000
PAGES = 40
TARGETS = {"store_s": 120.0, "cluster_page_p95_ms": 200.0, "datasets_list_p95_ms": 50.0, "training_set_s": 30.0}


def features(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(unlabeled embeddings (n, 128), their person, labeled embeddings, their person)."""
    rng = np.random.default_rng(seed)
    sizes = rng.geometric(0.1, size=n // 5)
    person = np.repeat(np.arange(len(sizes)), sizes)[:n]
    people = int(person.max()) + 1
    centres = rng.standard_normal((people + LABELED_PEOPLE, 128)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(who: np.ndarray) -> np.ndarray:
        out = np.empty((len(who), 128), np.float32)
        for a in range(0, len(who), 100_000):
            w = who[a:a + 100_000]
            x = centres[w] + 0.6 * rng.standard_normal((len(w), 128)).astype(np.float32) / np.sqrt(128)
            out[a:a + 100_000] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    shared = min(KNOWN_PEOPLE, people // 10)
    known = np.concatenate([np.arange(shared), people + np.arange(LABELED_PEOPLE - shared)])
    lab_person = np.repeat(known, LABELED_PER_PERSON)
    return draw(person), person, draw(lab_person), lab_person


def fill(n: int) -> dict:
    """The two datasets with faces and embeddings: {"ds", "lab", "person", "rows_s", "embeddings_s"}."""
    from django.db import transaction

    from facecurate.datasets.models import Dataset, Face, Identity, Image
    from facecurate.recognition.services.embeddings import save_embeddings
    from facecurate.recognition.services.versions import active_version

    emb, person, lab_emb, lab_person = features(n)
    t0 = time.perf_counter()
    ds = Dataset.objects.create(name="synthetic-unlabeled", kind="unlabeled")
    for s in range(0, n, BATCH):
        with transaction.atomic():
            imgs = Image.objects.bulk_create([
                Image(dataset=ds, source_name=f"u/{i}.jpg", file=f"x/{i}.jpg", sha256=f"u-{i}", size_bytes=1,
                      status="ok", num_faces=1) for i in range(s, min(s + BATCH, n))], batch_size=5000)
            Face.objects.bulk_create([Face(image=im, dataset=ds, index=0, is_primary=True, crop=f"c/{im.pk}.png")
                                      for im in imgs], batch_size=5000)
    lab = Dataset.objects.create(name="synthetic-labeled", kind="labeled")
    idents = Identity.objects.bulk_create([Identity(dataset=lab, name=f"person {i}") for i in range(LABELED_PEOPLE)])
    with transaction.atomic():
        imgs = Image.objects.bulk_create([
            Image(dataset=lab, identity=idents[i // LABELED_PER_PERSON], source_name=f"l/{i}.jpg", file=f"l/{i}.jpg",
                  sha256=f"l-{i}", size_bytes=1, status="ok", num_faces=1) for i in range(len(lab_person))])
        Face.objects.bulk_create([Face(image=im, dataset=lab, identity=im.identity, index=0, is_primary=True,
                                       crop=f"c/l{im.pk}.png") for im in imgs])
    rows = time.perf_counter() - t0
    version = active_version()
    for d, e in ((ds, emb), (lab, lab_emb)):
        ids = np.asarray(d.faces.order_by("id").values_list("id", flat=True), np.int64)
        for part in range(16):
            sl = slice(part * len(ids) // 16, (part + 1) * len(ids) // 16)
            save_embeddings(d.pk, version, ids[sl].tolist(), e[sl], name=f"chunk-{part}")
    return {"ds": ds, "lab": lab, "person": person, "rows_s": rows, "embeddings_s": time.perf_counter() - t0 - rows}


def run_stages(ds, lab) -> tuple[object, dict]:
    from facecurate.jobs.models import Job
    from facecurate.recognition.services.versions import active_version
    from facecurate.runs.models import PipelineRun
    from facecurate.runs.services import stages, store

    job = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, dataset=ds, state="running")
    run = PipelineRun.objects.create(job=job, unlabeled_dataset=ds, recognizer=active_version())
    run.labeled_datasets.set([lab])
    out = {}
    for name, fn in (("overlap", stages.overlap_stage), ("cluster", stages.cluster_stage),
                     ("uncertainty", stages.uncertainty_stage), ("store", store.store_stage)):
        with harness.timed() as t:
            fn(None, run)
        out[name] = {"seconds": round(t.seconds, 2), "peak_rss_mib_after": round(harness.peak_rss_mib())}
        print(name, out[name], flush=True)
    job.state = "succeeded"
    job.save(update_fields=["state"])
    run.refresh_from_db()
    return run, out


def _series(fn, calls: list) -> tuple[dict, list[float]]:
    fn(calls[0])
    times = []
    for c in calls:
        with harness.timed() as t:
            r = fn(c)
        assert r.status_code == 200, (r.status_code, r.content[:300])
        times.append(t.seconds)
    return _pct(times), times


def pages(run) -> dict:
    from django.test import Client

    from facecurate.accounts.roles import create_user
    from facecurate.runs.models import Cluster

    user, _ = create_user("bench-staff", role="staff")
    client = Client()
    client.force_login(user)
    top = list(Cluster.objects.filter(run=run, review_state="pending").order_by("-priority", "id")
               .values_list("pk", flat=True)[:PAGES])
    q = f"/api/runs/{run.pk}/clusters/?state=pending&ordering=priority&limit=100"
    out = {"clusters_opened": len(top)}
    out["queue_api"], _ = _series(lambda _: client.get(q), list(range(PAGES)))
    out["queue_html"], _ = _series(lambda _: client.get(f"/runs/{run.pk}/review/"), list(range(PAGES)))
    out["cluster_html"], html = _series(lambda c: client.get(f"/clusters/{c}/"), top)
    out["faces_api"], faces = _series(lambda c: client.get(f"/api/clusters/{c}/faces/?limit=200"), top)
    out["suggestions_api"], sugg = _series(lambda c: client.get(f"/api/clusters/{c}/suggestions/"), top)
    out["cluster_page"] = _pct([a + b + c for a, b, c in zip(html, faces, sugg)])
    out["datasets_api"], _ = _series(lambda _: client.get("/api/datasets/"), list(range(PAGES)))
    out["home_html"], _ = _series(lambda _: client.get("/"), list(range(PAGES)))
    return out


def training_set(run, lab) -> dict:
    from facecurate.recognition.services import retrain

    opts = retrain.check_options({})
    with harness.timed() as t_gather:
        g = retrain.gather([lab.pk], [run.pk], opts)
    with harness.timed() as t_build:
        ts, _, _ = retrain.training_set(g, opts)
    return {"gather_s": round(t_gather.seconds, 2), "build_s": round(t_build.seconds, 2),
            "seconds": round(t_gather.seconds + t_build.seconds, 2), "rows": len(ts),
            "pseudo_classes": int((ts.class_identity < 0).sum()),
            "peak_rss_mib_after": round(harness.peak_rss_mib())}


def child(args) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from pipeline.clustering.metrics import pairwise_prf

    call_command("migrate", verbosity=0)
    res: dict = {"backend": connection.vendor, "faces": args.faces, "load_average_at_start": os.getloadavg()}
    made = fill(args.faces)
    res["fill"] = {"rows_s": round(made["rows_s"], 1), "embeddings_s": round(made["embeddings_s"], 1)}
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
    run, res["stages"] = run_stages(made["ds"], made["lab"])
    res["stages_total_s"] = round(sum(s["seconds"] for s in res["stages"].values()), 1)
    res["counts"] = run.counts
    from facecurate.runs.models import RunFace

    got = dict(RunFace.objects.filter(run=run).values_list("face_id", "original_cluster__number"))
    ids = np.asarray(made["ds"].faces.order_by("id").values_list("id", flat=True), np.int64)
    pred = np.array([-1 if got.get(f) is None else got[f] for f in ids.tolist()])
    clustered = pred >= 0
    p, r, f = pairwise_prf(made["person"][clustered], pred[clustered])
    res["clustering"] = {"faces_clustered": int(clustered.sum()), "pairwise_precision": round(p, 4),
                         "pairwise_recall": round(r, 4), "pairwise_f": round(f, 4)}
    res["pages"] = pages(run)
    res["training_set"] = training_set(run, made["lab"])
    res["peak_rss_mib"] = round(harness.peak_rss_mib())
    res["load_average_at_end"] = os.getloadavg()
    print("RESULT " + json.dumps(res, default=float), flush=True)


def _met(value: float, target: float) -> str:
    return f"{value} ({'met' if value <= target else 'not met'}; target {target:g})"


def markdown(res: dict) -> str:
    lines = ["# One run end to end at scale: stages, review pages, retraining set", "",
             "Synthetic faces and embeddings in the database (see the script's docstring); the product's own stage "
             "functions, pages (Django test client, in process, warm) and retraining-set builder. Targets are "
             "issue 18's.", ""]
    for b in res["backends"]:
        s, pg, ts = b["stages"], b["pages"], b["training_set"]
        lines += [f"## {b['backend']}: {b['faces']:,} faces", "",
                  f"Fill: rows {b['fill']['rows_s']} s, embeddings {b['fill']['embeddings_s']} s. Load average "
                  f"{b['load_average_at_start'][0]:.1f} at the start, {b['load_average_at_end'][0]:.1f} at the end; "
                  f"peak RSS {b['peak_rss_mib']:,} MiB.", "",
                  "| stage | seconds | peak RSS MiB after |", "|---|---|---|"]
        lines += [f"| {k} | {v['seconds']} | {v['peak_rss_mib_after']:,} |" for k, v in s.items()]
        lines += [f"| whole run after embedding | {b['stages_total_s']} | |", "",
                  f"Store stage: {_met(s['store']['seconds'], TARGETS['store_s'])} s. Counts: `{json.dumps(b['counts'])}`. "
                  f"Clustering against the synthetic people (clustered faces only): `{json.dumps(b['clustering'])}`.", "",
                  f"Pages ({pg['clusters_opened']} clusters from the top of the queue; ms):", "",
                  "| request | p50 | p95 |", "|---|---|---|"]
        for key in ("queue_html", "queue_api", "cluster_html", "faces_api", "suggestions_api", "cluster_page",
                    "home_html", "datasets_api"):
            lines.append(f"| {key.replace('_', ' ')} | {pg[key]['p50_ms']} | {pg[key]['p95_ms']} |")
        lines += ["", f"Cluster page (HTML + faces + suggestions, one after another) p95: "
                  f"{_met(pg['cluster_page']['p95_ms'], TARGETS['cluster_page_p95_ms'])} ms; datasets list (API) p95: "
                  f"{_met(pg['datasets_api']['p95_ms'], TARGETS['datasets_list_p95_ms'])} ms.", "",
                  f"Retraining set from the run: gather {ts['gather_s']} s + build {ts['build_s']} s = "
                  f"{_met(ts['seconds'], TARGETS['training_set_s'])} s; {ts['rows']:,} rows, {ts['pseudo_classes']:,} "
                  f"pseudo-identities.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=1_000_000)
    ap.add_argument("--backends", default="postgres,sqlite")
    ap.add_argument("--name", default="scale_run", help="results name")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    res = {"faces": args.faces, "backends": []}
    for backend in filter(None, args.backends.split(",")):
        res["backends"].append(run_child(str(Path(__file__).resolve()), backend, ["--faces", str(args.faces)]))
    harness.write_results(args.name, res, markdown(res))


if __name__ == "__main__":
    main()
