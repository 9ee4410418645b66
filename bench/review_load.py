"""Review under load: 20 simulated annotators working clusters at once for 60 s, against the product as
`make run` starts it (bin/run: migrate, two Celery workers, gunicorn with gunicorn.conf.py), on the
embedded default (SQLite + filesystem broker) and on PostgreSQL (+ Redis).

    nice -n 10 .venv/bin/python bench/review_load.py                    # both backends, 20 x 60 s
    .venv/bin/python bench/review_load.py --backends sqlite --seconds 20  # a quick look

Data (made once per backend in a fresh database, after bin/run has migrated it): the 1,402 glint-sample
faces (real crops as thumbnails, their SFace embeddings), two runs over them with clusters of 3 faces of
one person each (about 470 clusters per run, random p-), a centroid artifact per run (merge
suggestions), 20 annotator accounts; annotators 0-9 work run 1, 10-19 run 2.

Each annotator is one browser (its own session cookie, at most 6 requests at once, as Chromium per host)
signed in through the login form, that opens the run's queue page (HTML, its static files once, the run,
the first 100 pending clusters) and from its own place in the queue works clusters one after another
with the requests the cluster page makes (frontend/static/facecurate/cluster.js):

1. GET /clusters/<id>/ (the page, which carries the cluster as JSON);
2. at once: POST lease acquire (its answer is the cluster as it is now), GET faces (limit 200);
3. at once (6 at a time): suggestions, the history (review-actions, user=me, 8) and the thumbnails of its
   faces (the run's labeled sets come in the page's HTML; the identity list is fetched only when the
   search box is used, which these annotators do not);
4. looks for --think seconds (uniform), then: confirm (65 %), reject the most doubtful face (15 %), or
   skip (20 %); confirm and reject reload the history; a cluster another annotator holds (lease 409)
   is left read-only, without an action;
5. next: the queue's keyset page after this cluster (limit 1), or the first page again at its end;
6. leaving: the lease-release POST, sent without waiting (the page's keepalive fetch on pagehide).

Like Chromium, every page navigation also opens a speculative connection that sends nothing; it is
closed at the next navigation (the condition that held gunicorn's sync workers: issue 17 item 10).

Counted per request: latency (send to whole body read), status; errors are transport failures, time-outs
(30 s), 5xx, and 4xx other than the expected 409s (lease held, stale version); conflicts are the 409s.
A request whose kept-alive socket the server closed just as it was sent (reset, nothing received) is sent
once more on a new connection, as Chromium does; those are counted (resends) and timed whole.
With ``--baseline sqlite`` (the default) SQLite is run a second time with the old `bin/run`'s web server
(2 sync gunicorn workers, forced through GUNICORN_CMD_ARGS; everything else as now), for comparison.
Written by this script: bench/results/review_load.{json,md}. The client (up to 120 threads) runs on the
same machine as the server; the machine's load average is recorded before and after each backend.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "review_load"
PASSWORD = "bench-password-1"
PG_DB = os.environ.get("REVIEW_LOAD_PG_DB", "fc_hang_review_load")
PG_URL = "postgres://postgres@127.0.0.1:5432/{}"
REDIS_URL = os.environ.get("REVIEW_LOAD_REDIS_URL", "redis://127.0.0.1:6379/9")
CACHE = Path(os.environ.get("FACECURATE_CACHE", ROOT / ".cache"))
PER_CLUSTER = 3
EXPECTED_409 = {"leased", "stale_version"}
SERVERS = {"gthread": "gunicorn.conf.py (gthread)", "sync": "2 sync workers (the old bin/run)"}


# --------------------------------------------------------------------------- populate (child process)
def populate(n_annotators: int) -> dict:
    import django

    django.setup()
    import numpy as np
    from django.conf import settings

    from facecurate.accounts.roles import create_user
    from facecurate.datasets.models import Dataset, Face, Image
    from facecurate.jobs.models import Job
    from facecurate.recognition.models import Artifact
    from facecurate.recognition.services import artifacts
    from facecurate.recognition.services.embeddings import save_embeddings
    from facecurate.recognition.services.versions import active_version
    from facecurate.runs.models import Cluster, PipelineRun, RunFace
    from facecurate.runs.services.member_index import write_member_index
    from facecurate.runs.services.review import refresh_stats
    from facecurate.runs.services.stages import art_rel
    from pipeline.features import load_features

    users = [f"annot{i:02d}" for i in range(n_annotators)]
    for u in users:
        create_user(u, role="annotator", password=PASSWORD)
    feats = load_features(CACHE / "features" / "glint_sface.npz")
    media = Path(settings.MEDIA_ROOT)
    ds = Dataset.objects.create(name="load-glint", kind="unlabeled", aligned=True)
    images = []
    for i, p in enumerate(feats.paths):
        src = Path(str(p))
        rel = f"load/{i}.png"
        (media / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, media / rel)
        images.append(Image(dataset=ds, source_name=f"{src.parent.name}/{src.name}", file=rel, sha256=f"l{i}",
                            size_bytes=src.stat().st_size, status="ok", num_faces=1, width=112, height=112))
    images = Image.objects.bulk_create(images)
    faces = Face.objects.bulk_create([Face(image=im, dataset=ds, index=0, is_primary=True, crop=im.file,
                                           thumbnail=im.file, box=[0, 0, 112, 112]) for im in images])
    version = active_version()
    save_embeddings(ds.pk, version, [f.pk for f in faces], feats.embeddings, name="load")
    labels = np.asarray(feats.labels)
    rng = np.random.default_rng(0)
    runs = []
    for r in range(2):
        job = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, dataset=ds, state=Job.State.SUCCEEDED)
        run = PipelineRun.objects.create(job=job, unlabeled_dataset=ds, recognizer=version)
        groups = []
        for name in sorted(set(labels.tolist())):
            rows = np.flatnonzero(labels == name)
            groups += [rows[k:k + PER_CLUSTER] for k in range(0, len(rows), PER_CLUSTER)]
        clusters = Cluster.objects.bulk_create([Cluster(run=run, number=k) for k in range(len(groups))])
        rfs = []
        for c, rows in zip(clusters, groups):
            for i in rows.tolist():
                p = float(rng.beta(0.5, 6))
                rfs.append(RunFace(run=run, face=faces[i], cluster=c, original_cluster=c, p_minus=p, margin=1 - p,
                                   overlap_state=0))
        RunFace.objects.bulk_create(rfs, batch_size=2000)
        for c in clusters:
            refresh_stats(c)
        Cluster.objects.bulk_update(clusters, ["size", "priority", "mean_p_minus", "max_p_minus", "review_state"])
        write_member_index(run, np.array([f.pk for f in faces]), feats.embeddings)  # as the cluster stage does
        cents = np.stack([feats.embeddings[rows].mean(0) for rows in groups]).astype(np.float32)
        cents /= np.linalg.norm(cents, axis=1, keepdims=True)
        artifacts.write_npz(art_rel(run, "centroids"), Artifact.Kind.CENTROIDS, job, centroids=cents)
        run.counts = {"faces": len(faces), "clusters": len(clusters)}
        run.save()
        runs.append(run.pk)
    return {"users": users, "runs": runs, "faces": len(faces), "clusters_per_run": len(groups)}


# --------------------------------------------------------------------------- the simulated browsers
class Recorder:
    def __init__(self, t0: float) -> None:
        self.t0, self.rows, self.lock, self.resends = t0, [], threading.Lock(), 0

    def resend(self) -> None:
        with self.lock:
            self.resends += 1

    def add(self, label: str, status: int | None, seconds: float, error: str | None = None, code: str = "") -> None:
        with self.lock:
            self.rows.append({"t": round(time.monotonic() - self.t0, 3), "label": label, "status": status,
                              "s": seconds, "error": error, "code": code})


def _label(method: str, url: str) -> str:
    path = url.split("?")[0]
    path = re.sub(r"/media/.*", "/media/<thumbnail>", path)
    path = re.sub(r"/static/.*", "/static/<file>", path)
    return method + " " + re.sub(r"/\d+/", "/<id>/", path)


class Browser:
    """One annotator's browser: a session, a pool of 6 connections' worth of requests at once."""

    def __init__(self, base: str, user: str, run: int, rec: Recorder, seed: int, think: tuple[float, float]) -> None:
        import requests

        self.base, self.user, self.run, self.rec, self.think = base, user, run, rec, think
        self.s = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=6)
        self.s.mount("http://", adapter)
        self.pool = ThreadPoolExecutor(6)
        self.rng = random.Random(seed)
        self.spec: socket.socket | None = None
        self.pages = 0

    def req(self, method: str, url: str, body: dict | None = None, form: dict | None = None):
        headers = {}
        if method == "POST":
            headers["X-CSRFToken"] = self.s.cookies.get("csrftoken", "")
            headers["Referer"] = self.base + "/"
        t = time.perf_counter()
        for attempt in (0, 1):
            try:
                r = self.s.request(method, self.base + url, json=body, data=form, headers=headers, timeout=30,
                                   allow_redirects=False)
                _ = r.content
                break
            except Exception as exc:  # noqa: BLE001 -- transport failure or time-out: an error
                # Like Chromium: a request whose kept-alive socket was closed under it (reset, nothing
                # received) is sent once more on a new connection; counted as a resend, timed whole.
                if attempt == 0 and "Connection aborted" in str(exc):
                    self.rec.resend()
                    continue
                self.rec.add(_label(method, url), None, time.perf_counter() - t, f"{type(exc).__name__}: {exc}")
                return None
        code = ""
        if r.status_code == 409:
            try:
                code = r.json().get("code", "")
            except ValueError:
                pass
        bad = r.status_code >= 500 or (400 <= r.status_code and not (r.status_code == 409 and code in EXPECTED_409))
        self.rec.add(_label(method, url), r.status_code, time.perf_counter() - t,
                     f"HTTP {r.status_code}: {r.text[:200]}" if bad else None, code)
        return r

    def json(self, method, url, body=None):
        r = self.req(method, url, body)
        if r is None or r.status_code >= 300:
            return None
        return r.json()

    def many(self, calls):
        return [f.result() for f in [self.pool.submit(*c) for c in calls]]

    def navigate(self) -> None:
        """A page navigation: Chromium's speculative connection that carries nothing (until the next one)."""
        if self.spec is not None:
            self.spec.close()
        host, port = self.base.split("//")[1].split(":")
        try:
            self.spec = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            self.spec = None
        self.pages += 1

    def login(self) -> None:
        self.req("GET", "/login/")
        self.req("POST", "/login/", form={"username": self.user, "password": PASSWORD,
                                         "csrfmiddlewaretoken": self.s.cookies.get("csrftoken", "")})

    def queue(self, skip_rows: int) -> int | None:
        self.navigate()
        r = self.req("GET", f"/runs/{self.run}/review/")
        if r is not None and self.pages == 1:  # static files once (then from the browser's cache)
            for src in sorted(set(re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text))):
                self.req("GET", src)
        page, _ = self.many([(self.json, "GET", f"/api/runs/{self.run}/clusters/?state=pending&ordering=priority&limit=100"),
                             (self.json, "GET", f"/api/runs/{self.run}/")])
        rows = (page or {}).get("results") or []
        return rows[min(skip_rows, len(rows) - 1)]["id"] if rows else None

    def cluster(self, cid: int, deadline: float) -> int | None:
        self.navigate()
        page = self.req("GET", f"/clusters/{cid}/")
        if page is None or page.status_code != 200:
            return None
        lease, faces = self.many([(self.req, "POST", f"/api/clusters/{cid}/lease/", {"op": "acquire", "seconds": 120}),
                                  (self.json, "GET", f"/api/clusters/{cid}/faces/?limit=200")])
        read_only = lease is None or lease.status_code != 200
        # the page carries the cluster; the lease's answer is it as it is now (the script reads that one)
        c = json.loads(re.search(r'id="cluster-data"[^>]*>(.*?)</script>', page.text, re.S).group(1)) if read_only \
            else lease.json()
        faces = (faces or {}).get("results") or []
        calls = [(self.req, "GET", f"/api/clusters/{cid}/suggestions/"),
                 (self.req, "GET", f"/api/review-actions/?run={self.run}&user=me&limit=8")]
        calls += [(self.req, "GET", f["thumbnail_url"].replace(self.base, "")) for f in faces[:24] if f.get("thumbnail_url")]
        self.many(calls)
        time.sleep(min(self.rng.uniform(*self.think), max(0.0, deadline - time.monotonic())))
        if not read_only and time.monotonic() < deadline:
            roll = self.rng.random()
            if roll < 0.65:
                out = self.req("POST", f"/api/clusters/{cid}/confirm/", {"version": c["version"]})
            elif roll < 0.80 and faces:
                out = self.req("POST", f"/api/clusters/{cid}/reject/", {"version": c["version"], "faces": [faces[0]["id"]]})
            else:
                out = self.req("POST", f"/api/clusters/{cid}/skip/", {"version": c["version"]})
            if out is not None and out.status_code == 200 and "skip" not in out.url:
                self.req("GET", f"/api/review-actions/?run={self.run}&user=me&limit=8")
        cur = base64.urlsafe_b64encode(json.dumps([c["priority"], cid], separators=(",", ":")).encode()).decode()
        nxt = self.json("GET", f"/api/runs/{self.run}/clusters/?state=pending&ordering=priority&limit=1&cursor={cur}")
        if not read_only:  # pagehide: the keepalive release, not waited for
            self.pool.submit(self.req, "POST", f"/api/clusters/{cid}/lease/", {"op": "release"})
        rows = (nxt or {}).get("results") or []
        return rows[0]["id"] if rows else None

    def work(self, slot: int, start: float, deadline: float) -> None:
        time.sleep(max(0.0, start - time.monotonic()))
        cid = self.queue(slot)
        while time.monotonic() < deadline:
            if cid is None:
                cid = self.queue(self.rng.randrange(20))
                if cid is None:
                    break
            cid = self.cluster(cid, deadline)
        self.pool.shutdown(wait=True)
        if self.spec is not None:
            self.spec.close()


# --------------------------------------------------------------------------- one backend
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("bin/run exited")
        try:
            urllib.request.urlopen(url + "/healthz", timeout=5)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("bin/run's web server did not come up")


def _fresh_pg() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_DB}"')


def _env(backend: str, tmp: Path, port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECURATE_")}
    env.update({"FACECURATE_VAR_DIR": str(tmp / "var"), "FACECURATE_BIND": f"127.0.0.1:{port}",
                "FACECURATE_SECRET_KEY": "review-load-bench", "DJANGO_SETTINGS_MODULE": "facecurate.settings",
                "PYTHONPATH": str(ROOT), "FACECURATE_CACHE": str(CACHE)})
    if backend == "postgres":
        env.update({"FACECURATE_DATABASE_URL": PG_URL.format(PG_DB), "FACECURATE_BROKER_URL": REDIS_URL})
    return env


def run_backend(backend: str, args, web: str = "gthread") -> dict:
    from bench.harness import facts

    tmp = OUT / f"{backend}-{web}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if backend == "postgres":
        _fresh_pg()
    port = _free_port()
    env, url = _env(backend, tmp, port), f"http://127.0.0.1:{port}"
    if web == "sync":  # the old bin/run's web server: 2 sync workers (the rest of gunicorn.conf.py as now)
        env["GUNICORN_CMD_ARGS"] = "--worker-class sync --threads 1"
    log = open(tmp / "bin_run.log", "w")
    server = subprocess.Popen(["bin/run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        _wait_up(url, server)
        made = json.loads(subprocess.run([sys.executable, __file__, "--populate", str(args.annotators)], cwd=ROOT,
                                         env=env, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        t0 = time.monotonic()
        rec = Recorder(t0)
        half = len(made["users"]) // 2
        setup = Recorder(t0)  # signing in (password hashing) is not review work: timed apart, before the window
        browsers = [Browser(url, u, made["runs"][0 if i < half else 1], setup, seed=i, think=tuple(args.think))
                    for i, u in enumerate(made["users"])]
        for b in browsers:
            b.login()
            b.rec = rec
        load_before = [round(x, 2) for x in os.getloadavg()]
        rec.t0 = start = time.monotonic() + 1.0
        deadline = start + args.seconds
        threads = [threading.Thread(target=b.work, args=(i % half, start, deadline)) for i, b in enumerate(browsers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
        load_after = [round(x, 2) for x in os.getloadavg()]
        pages = sum(b.pages for b in browsers)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()
    out = summarize(backend, rec.rows, made, wall, pages, load_before, load_after, facts())
    out["server"] = web
    out["resends_after_reset"] = rec.resends
    out["sign_in"] = {k: _stats([r["s"] for r in setup.rows if r["label"] == k]) for k in ("GET /login/", "POST /login/")}
    out["sign_in"]["errors"] = sum(bool(r["error"]) for r in setup.rows)
    return out


def _stats(secs: list[float]) -> dict:
    secs = sorted(secs)
    q = statistics.quantiles(secs, n=100, method="inclusive") if len(secs) > 1 else secs * 99
    return {"n": len(secs), "p50_ms": round(1000 * q[49], 1), "p95_ms": round(1000 * q[94], 1),
            "max_ms": round(1000 * secs[-1], 1), "over_2s": sum(s > 2.0 for s in secs)}


def summarize(backend, rows, made, wall, pages, load_before, load_after, machine) -> dict:
    by = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r)
    errors = [r for r in rows if r["error"]]
    out = {"backend": backend, "data": made, "seconds": round(wall, 1), "requests": len(rows),
           "requests_per_s": round(len(rows) / wall, 1), "page_navigations": pages,
           "all": _stats([r["s"] for r in rows]), "errors": len(errors),
           "error_examples": sorted({r["label"] + " -> " + r["error"] for r in errors})[:10],
           "conflicts_409": {c: sum(r["code"] == c for r in rows) for c in sorted(EXPECTED_409)},
           "actions": {k: len(by.get(f"POST /api/clusters/<id>/{k}/", [])) for k in ("confirm", "reject", "skip")},
           "by_request": {k: _stats([r["s"] for r in v]) for k, v in sorted(by.items())},
           "slowest": sorted(rows, key=lambda r: -r["s"])[:10],
           "load_average_before": load_before, "load_average_after": load_after, "machine": machine}
    out["meets_target"] = out["all"]["p95_ms"] <= 300 and out["all"]["over_2s"] == 0 and out["errors"] == 0
    return out


def markdown(res: dict, args) -> str:
    lines = [f"# Review under load: {args.annotators} annotators for {args.seconds} s per backend", "",
             "The product as `bin/run` starts it (gunicorn.conf.py: gthread, 2 processes x 8 threads; two Celery "
             "workers idle), the cluster page's own request mix per simulated browser (see the script's docstring), "
             f"think time {args.think[0]}-{args.think[1]} s, a silent speculative connection per navigation. "
             "Target: p95 <= 300 ms, no request over 2 s, zero errors.", "",
             "| backend | requests | req/s | pages | p50 ms | p95 ms | max ms | > 2 s | errors | 409 leased / stale | "
             "confirm / reject / skip | load avg before -> after | target met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b in res.values():
        a, c, act = b["all"], b["conflicts_409"], b["actions"]
        lines.append(f"| {b['backend']}, {SERVERS[b['server']]} | {b['requests']} | {b['requests_per_s']} | {b['page_navigations']} | "
                     f"{a['p50_ms']} | {a['p95_ms']} | {a['max_ms']} | {a['over_2s']} | {b['errors']} | "
                     f"{c['leased']} / {c['stale_version']} | {act['confirm']} / {act['reject']} / {act['skip']} | "
                     f"{b['load_average_before']} -> {b['load_average_after']} | {'yes' if b['meets_target'] else 'NO'} |")
    for b in res.values():
        lines += ["", f"## {b['backend']}, {SERVERS[b['server']]}: per request", "", "| request | n | p50 ms | p95 ms | max ms | > 2 s |",
                  "|---|---|---|---|---|---|"]
        for k, s in b["by_request"].items():
            lines.append(f"| `{k}` | {s['n']} | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} | {s['over_2s']} |")
        lines += ["", "Slowest requests (seconds into the window, request, status, ms): " + "; ".join(
            f"{r['t']} s `{r['label']}` {r['status']} {round(1000 * r['s'])}" for r in b["slowest"][:5])]
        lines += ["", f"Requests sent again after a kept-alive socket was reset under them (as Chromium does; "
                  f"timed whole above): {b['resends_after_reset']}."]
        si = b["sign_in"]["POST /login/"]
        lines += ["", f"Sign-in before the window (not counted above): POST /login/ p50 {si['p50_ms']} ms, max "
                  f"{si['max_ms']} ms ({si['n']} at once: password hashing), errors {b['sign_in']['errors']}."]
        if b["error_examples"]:
            lines += ["", "Errors (examples): " + "; ".join(f"`{e}`" for e in b["error_examples"])]
    cpus = next(iter(res.values()))["machine"]
    lines += ["", f"Machine: {cpus['cpu_count']} CPUs shared with other engineers' jobs; the load average (1, 5, 15 min) "
              "before and after each backend is in the table: latencies above are what this product gets on a "
              "machine loaded that much, client and server on the same cores."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--annotators", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--think", type=float, nargs=2, default=[1.0, 3.0], metavar=("MIN", "MAX"))
    ap.add_argument("--baseline", default="sqlite",
                    help="backends also run with the old server (2 sync workers) for comparison; 'none': no baseline")
    ap.add_argument("--no-write", action="store_true", help="print, do not write bench/results")
    ap.add_argument("--populate", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.populate is not None:
        print(json.dumps(populate(args.populate)))
        return
    res = {b: run_backend(b, args) for b in args.backends.split(",")}
    for b in ([] if args.baseline == "none" else args.baseline.split(",")):
        res[f"{b}-sync"] = run_backend(b, args, "sync")
    (OUT / "raw.json").write_text(json.dumps(res, indent=1, default=str))  # kept if the report below fails
    md = markdown(res, args)
    print(md)
    if not args.no_write:
        from bench.harness import write_results

        write_results("review_load", {"annotators": args.annotators, "seconds": args.seconds, "think": args.think,
                                      "target": {"p95_ms": 300, "over_2s": 0, "errors": 0}, "backends": res}, md)


if __name__ == "__main__":
    main()
