"""API latency at scale, on SQLite (the embedded default) and PostgreSQL, through gunicorn on 127.0.0.1.

    .venv/bin/python bench/api_scale.py             # both backends, 1M faces, 100k clusters (about 15 min)
    .venv/bin/python bench/api_scale.py --faces 100000 --clusters 10000 --seconds 10   # a quick look

For each backend, a child process on a fresh database: inserts ``--faces`` synthetic images with one
face each (rows only, no files) in 4 datasets; stores two synthetic pipeline runs through the real
``store`` stage (100k faces; then ``--clusters`` clusters of 2 faces each) and times them; starts
gunicorn (2 workers x 4 threads) and measures the list endpoints: first each endpoint alone
(``--repeats`` sequential requests: p50/p95), then ``--clients`` concurrent clients for ``--seconds``
(p50/p95 and errors; every request bounded, loopback only). Writes bench/results/api_scale.{json,md}.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "api_scale"
RESULTS = ROOT / "bench" / "results"
PG_URL = "postgres://postgres@127.0.0.1:5432/{}"
PG_DB = "facecurate_bench_api"


# --------------------------------------------------------------------------- child: fill, store, serve, load
def _fill(n_faces: int) -> dict:
    from django.db import transaction

    from facecurate.datasets.models import Dataset, Face, Identity, Image

    t0 = time.perf_counter()
    per = n_faces // 4
    for d in range(4):
        ds = Dataset.objects.create(name=f"synthetic-{d}", kind="labeled" if d == 3 else "unlabeled")
        idents = Identity.objects.bulk_create([Identity(dataset=ds, name=f"person {i}") for i in range(2000)]) \
            if d == 3 else None
        for s in range(0, per, 20_000):
            with transaction.atomic():
                imgs = Image.objects.bulk_create([
                    Image(dataset=ds, source_name=f"{d}/{i}.jpg", file=f"x/{d}/{i}.jpg", sha256=f"{d}-{i}",
                          size_bytes=1, status="ok", num_faces=1, identity=idents[i % 2000] if idents else None)
                    for i in range(s, min(s + 20_000, per))], batch_size=5000)
                Face.objects.bulk_create([Face(image=im, dataset=ds, identity=im.identity, index=0, is_primary=True,
                                               crop=f"c/{im.pk}.png") for im in imgs], batch_size=5000)
    return {"faces": 4 * per, "seconds": round(time.perf_counter() - t0, 1)}


def _store_run(user, dataset, n_faces: int, n_clusters: int, seed: int) -> tuple[object, float]:
    from facecurate.jobs.models import Job
    from facecurate.recognition.models import Artifact
    from facecurate.recognition.services import artifacts
    from facecurate.recognition.services.versions import active_version
    from facecurate.runs.models import PipelineRun
    from facecurate.runs.services.stages import art_rel
    from facecurate.runs.services.store import store_stage

    rng = np.random.default_rng(seed)
    face_ids = np.asarray(dataset.faces.order_by("id").values_list("id", flat=True)[:n_faces], np.int64)
    n = len(face_ids)
    labels = np.sort(rng.integers(0, n_clusters, n)) if n_clusters else np.full(n, -1)
    labels[: min(n_clusters, n)] = np.arange(min(n_clusters, n))  # every cluster has a face
    job = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, dataset=dataset, state="succeeded")
    run = PipelineRun.objects.create(job=job, unlabeled_dataset=dataset, recognizer=active_version(),
                                     uncertainty_report={"priority": {"rule": "max"}}, created_by=user)
    p = rng.beta(0.5, 8, n).astype(np.float32)
    artifacts.write_npz(art_rel(run, "overlap"), Artifact.Kind.OVERLAP, job, face_ids=face_ids,
                        state=np.zeros(n, np.int8), max_logit=rng.random(n).astype(np.float32),
                        predicted=np.full(n, -1, np.int64), posterior=np.full(n, np.nan, np.float32))
    artifacts.write_npz(art_rel(run, "clusters"), Artifact.Kind.CLUSTERS, job, face_ids=face_ids, labels=labels,
                        carried_from=np.full(n, -1, np.int64))
    artifacts.write_npz(art_rel(run, "uncertainty"), Artifact.Kind.UNCERTAINTY, job, face_ids=face_ids, p_minus=p,
                        margin=rng.random(n).astype(np.float32))
    t0 = time.perf_counter()
    store_stage(None, run)
    return run, round(time.perf_counter() - t0, 2)


def _cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _endpoints(run, datasets) -> dict[str, str]:
    from facecurate.runs.models import Cluster
    from facecurate.runs.services.queries import encode_cursor

    big = datasets[0]
    mid_face = big.faces.order_by("id").values_list("id", flat=True)[big.faces.count() // 2]
    mid = Cluster.objects.filter(run=run, review_state="pending").order_by("-priority", "id")[
        run.clusters.count() // 2]
    largest = Cluster.objects.filter(run=run).order_by("-size", "id").first()
    return {
        "datasets (counts)": "/api/datasets/?limit=5",
        "dataset detail": f"/api/datasets/{big.pk}/",
        "images, first page": f"/api/images/?dataset={big.pk}&limit=50",
        "images, middle page": f"/api/images/?dataset={big.pk}&limit=50&cursor={_cursor(f'p={mid_face}')}",
        "faces, first page": f"/api/faces/?dataset={big.pk}&limit=50",
        "identities": f"/api/identities/?dataset={datasets[3].pk}&limit=50",
        "jobs": "/api/jobs/?limit=20",
        "queue, first page": f"/api/runs/{run.pk}/clusters/?limit=50",
        "queue, middle page": f"/api/runs/{run.pk}/clusters/?limit=50&cursor={encode_cursor([mid.priority, mid.pk])}",
        "queue, size >= 3": f"/api/runs/{run.pk}/clusters/?limit=50&min_size=3",
        "cluster faces": f"/api/clusters/{largest.pk}/faces/?limit=100",
    }


def _get(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Token {token}"})
    resp = conn.getresponse()
    resp.read()
    return resp.status, time.perf_counter() - t0


def _pct(xs: list[float]) -> dict:
    a = np.asarray(xs) * 1000
    return {"n": len(xs), "p50_ms": round(float(np.percentile(a, 50)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "max_ms": round(float(a.max()), 1)} if xs else {"n": 0}


def _load(port: int, token: str, endpoints: dict[str, str], clients: int, seconds: float) -> dict:
    lat: dict[str, list[float]] = {k: [] for k in endpoints}
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(i: int) -> None:
        rnd = random.Random(i)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        names = list(endpoints)
        while time.monotonic() < stop_at:
            name = rnd.choice(names)
            try:
                status, secs = _get(conn, endpoints[name], token)
            except Exception as exc:  # a dropped connection counts as an error; reconnect
                with lock:
                    errors.append(f"{name}: {type(exc).__name__}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            with lock:
                (lat[name] if status == 200 else errors).append(secs if status == 200 else f"{name}: {status}")
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    total = sum(len(v) for v in lat.values())
    all_lat = [x for v in lat.values() for x in v]
    return {"clients": clients, "seconds": round(wall, 1), "requests": total + len(errors), "errors": len(errors),
            "error_kinds": sorted(set(errors))[:10], "requests_per_s": round(total / wall, 1), "all": _pct(all_lat),
            "endpoints": {k: _pct(v) for k, v in lat.items()}}


def child(args) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from facecurate.accounts.roles import create_user
    from facecurate.datasets.models import Dataset

    call_command("migrate", verbosity=0)
    user, token = create_user("bench", role="staff")
    res = {"backend": connection.vendor, "fill": _fill(args.faces), "load_average_at_start": os.getloadavg()}
    with connection.cursor() as cur:  # fresh statistics, as autovacuum / a periodic ANALYZE would give
        cur.execute("ANALYZE")
    datasets = list(Dataset.objects.order_by("id"))
    _, res["store_100k_faces_seconds"] = _store_run(user, datasets[0], 100_000, 30_000, 1)
    run, res["store_queue_run_seconds"] = _store_run(user, datasets[1], 2 * args.clusters, args.clusters, 2)
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    res["queue_run"] = {"faces": 2 * args.clusters, "clusters": run.clusters.count()}
    endpoints = _endpoints(run, datasets)
    connection.close()
    port = 18000 + random.Random().randint(0, 999)
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "facecurate.wsgi:application", "--bind",
                               f"127.0.0.1:{port}", "--workers", "2", "--threads", "4", "--timeout", "60"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(OUT / f"gunicorn-{res['backend']}.log", "w"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                if _get(conn, "/healthz", token)[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        alone = {}
        for name, path in endpoints.items():
            _get(conn, path, token)  # warm
            runs = [_get(conn, path, token) for _ in range(args.repeats)]
            bad = [s for s, _ in runs if s != 200]
            alone[name] = {**_pct([t for s, t in runs if s == 200]), "errors": len(bad), "path": path}
        res["sequential"] = alone
        res["concurrent"] = _load(port, token, endpoints, args.clients, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("RESULT " + json.dumps(res))


# --------------------------------------------------------------------------- parent
def _backend_env(backend: str) -> dict:
    var = OUT / f"var-{backend}"
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    env = {**os.environ, "FACECURATE_VAR_DIR": str(var), "FACECURATE_SECRET_KEY": "bench", "DJANGO_SETTINGS_MODULE":
           "facecurate.settings", "FACECURATE_LOG_LEVEL": "WARNING"}
    env.pop("FACECURATE_BROKER_URL", None)
    if backend == "postgres":
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
            c.execute(f"CREATE DATABASE {PG_DB}")
        env["FACECURATE_DATABASE_URL"] = PG_URL.format(PG_DB)
    else:
        env.pop("FACECURATE_DATABASE_URL", None)
    return env


def _versions() -> dict:
    import sqlite3

    out = {"sqlite": sqlite3.sqlite_version}
    try:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres") as c:
            out["postgresql"] = c.execute("show server_version").fetchone()[0]
    except Exception as exc:  # pragma: no cover - no server
        out["postgresql"] = f"unavailable: {exc}"
    return out


def _md(result: dict) -> str:
    a = result["args"]
    lines = [f"# API latency at scale ({a['faces']:,} faces, {a['clusters']:,} clusters in the queue run)", "",
             f"Command: `{result['command']}`  ", f"Machine: {json.dumps(result['machine'])}", "",
             "Rows are synthetic (one face per image, no files); requests go to gunicorn (2 workers x 4 threads) "
             "on 127.0.0.1 with token auth. Sequential: each endpoint alone, "
             f"{a['repeats']} requests after one warm-up. Concurrent: {a['clients']} clients for {a['seconds']} s, "
             "each picking endpoints at random.", ""]
    for r in result["backends"]:
        lines += [f"## {r['backend']}", "",
                  f"Inserting {r['fill']['faces']:,} images + faces: {r['fill']['seconds']} s. "
                  f"Storing a 100k-face run's rows (store stage): {r['store_100k_faces_seconds']} s; "
                  f"the queue run ({r['queue_run']['faces']:,} faces, {r['queue_run']['clusters']:,} clusters): "
                  f"{r['store_queue_run_seconds']} s.", "",
                  "| endpoint | alone p50 ms | alone p95 ms | under load p50 ms | under load p95 ms | requests under load |",
                  "|---|---|---|---|---|---|"]
        for name, s in r["sequential"].items():
            c = r["concurrent"]["endpoints"].get(name, {})
            lines.append(f"| {name} | {s.get('p50_ms')} | {s.get('p95_ms')} | {c.get('p50_ms')} | {c.get('p95_ms')} | "
                         f"{c.get('n')} |")
        c = r["concurrent"]
        lines += ["", f"Under load: {c['requests']:,} requests in {c['seconds']} s ({c['requests_per_s']}/s), "
                      f"**{c['errors']} errors** {c['error_kinds'] or ''}; all requests p50 {c['all'].get('p50_ms')} ms, "
                      f"p95 {c['all'].get('p95_ms')} ms.", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=1_000_000)
    ap.add_argument("--clusters", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.child:
        return child(args)
    from bench.harness import facts, write_results

    results = []
    for backend in args.backends.split(","):
        env = _backend_env(backend)
        proc = subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=3600)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            raise SystemExit(f"{backend} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        results.append(json.loads(line[-1][7:]))
        print(backend, "done", flush=True)
    result = {"command": "bench/api_scale.py " + " ".join(sys.argv[1:]), "args": vars(args),
              "machine": facts(**_versions()), "backends": results}
    write_results("api_scale", result, _md(result))
    print(_md(result))


if __name__ == "__main__":
    main()
