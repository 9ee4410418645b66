"""How fast the review UI opens, in Chromium on this machine, at sizes bigger than a day's work:

* a cluster of 1,000 real faces (glint-sample crops, their SFace embeddings for the suggestions);
* the review queue of a run with 100,000 clusters (synthetic rows: sizes and priorities drawn at random).

The product runs as `bin/run` runs it (gunicorn, 2 workers, WhiteNoise static files) on a fresh SQLite
database in a temporary folder. Each page is opened ``--repeats`` times, each time in a new browser
context (cold browser cache, warm server). Measured in the page:

* first paint: the ``first-contentful-paint`` entry (ms from navigation start);
* interactive: the page's ``fc-interactive`` mark, set once the first page of rows or faces is drawn and
  every key and click handler is bound (the cluster also holds its lease by then);
* images: every face thumbnail in the viewport decoded (cluster page);
* all faces: the 1,000 tiles drawn, the page loading 200 at a time as the annotator scrolls;
* the queue API's keyset page at the top and 99,900 clusters deep (server time seen by the client).

    PYTHONPATH=. FACECURATE_CACHE=/work/main/.cache .venv/bin/python bench/review_ui.py

Writes bench/results/review_ui.json and review_ui.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PASSWORD = "bench-password-1"


def machine() -> dict:
    from bench.harness import facts

    return facts(database="SQLite (WAL), fresh file")


def populate(media: Path, n_faces: int, n_clusters: int, seed: int = 0) -> dict:
    import django

    django.setup()
    import numpy as np
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from facecurate.accounts.roles import create_user
    from facecurate.datasets.models import Dataset, Face, Image
    from facecurate.jobs.models import Job
    from facecurate.recognition.services.embeddings import save_embeddings
    from facecurate.recognition.services.versions import active_version
    from facecurate.runs.models import Cluster, PipelineRun, RunFace
    from facecurate.runs.services.review import refresh_stats
    from pipeline.features import load_features

    create_user("bench", role="annotator", password=PASSWORD)
    feats = load_features(Path(os.environ.get("FACECURATE_CACHE", ROOT / ".cache")) / "features" / "glint_sface.npz")
    rows = np.arange(min(n_faces, len(feats.paths)))
    ds = Dataset.objects.create(name="bench-glint", kind="unlabeled", aligned=True)
    images = []
    for i in rows.tolist():
        src = Path(str(feats.paths[i]))
        rel = f"bench/{i}.png"
        (media / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, media / rel)
        images.append(Image(dataset=ds, source_name=f"{src.parent.name}/{src.name}", file=rel, sha256=f"b{i}",
                            size_bytes=src.stat().st_size, status="ok", num_faces=1, width=112, height=112))
    images = Image.objects.bulk_create(images)
    faces = Face.objects.bulk_create([Face(image=im, dataset=ds, index=0, is_primary=True, crop=im.file,
                                           thumbnail=im.file, box=[0, 0, 112, 112]) for im in images])
    version = active_version()
    save_embeddings(ds.pk, version, [f.pk for f in faces], feats.embeddings[rows], name="bench")
    rng = np.random.default_rng(seed)

    def run_for(dataset, n):
        job = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, dataset=dataset, state=Job.State.SUCCEEDED)
        return PipelineRun.objects.create(job=job, unlabeled_dataset=dataset, recognizer=version,
                                          counts={"faces": n, "clusters": 0})

    big_run = run_for(ds, len(faces))
    big = Cluster.objects.create(run=big_run, number=0)
    RunFace.objects.bulk_create([RunFace(run=big_run, face=f, cluster=big, original_cluster=big,
                                         p_minus=float(rng.beta(0.3, 3.0)), margin=0.5) for f in faces],
                                batch_size=2000)
    refresh_stats(big)
    big.save()
    big_run.counts = {"faces": len(faces), "clusters": 1}
    big_run.save()

    queue_ds = Dataset.objects.create(name="bench-queue", kind="unlabeled")
    queue_run = run_for(queue_ds, 0)
    sizes = rng.geometric(0.15, n_clusters)
    prio = rng.gamma(0.6, 1.0, n_clusters) * sizes / 10
    batch = []
    for k in range(n_clusters):
        batch.append(Cluster(run=queue_run, number=k, size=int(sizes[k]), priority=float(prio[k]),
                             mean_p_minus=float(prio[k] / sizes[k]), max_p_minus=float(min(1, 2 * prio[k] / sizes[k]))))
        if len(batch) == 5000:
            Cluster.objects.bulk_create(batch)
            batch = []
    Cluster.objects.bulk_create(batch)
    queue_run.counts = {"faces": int(sizes.sum()), "clusters": n_clusters}
    queue_run.save()
    deep = list(Cluster.objects.filter(run=queue_run).order_by("-priority", "id")
                .values_list("priority", "id")[n_clusters - 200:n_clusters - 199])[0]
    from django.db import connection

    connection.close()
    return {"cluster": big.pk, "cluster_size": big.size, "queue_run": queue_run.pk, "queue_clusters": n_clusters,
            "deep_cursor": [deep[0], deep[1]]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2)
            return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError("the server did not come up")


def login(context, url):
    page = context.new_page()
    page.goto(url + "/login/")
    page.fill("input[name=username]", "bench")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=who]")
    page.close()
    return context.storage_state()


PAINT = """() => {
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  const ready = performance.getEntriesByName('fc-interactive')[0];
  const nav = performance.getEntriesByType('navigation')[0];
  return {first_paint_ms: fcp ? fcp.startTime : null, interactive_ms: ready ? ready.startTime : null,
          dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null};
}"""


def measure_cluster(browser, url, state, cluster_id) -> dict:
    ctx = browser.new_context(storage_state=state, viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{url}/clusters/{cluster_id}/")
    page.wait_for_selector("body[data-ready=cluster]")
    out = page.evaluate(PAINT)
    page.wait_for_function("""() => { const vh = innerHeight;
        return [...document.querySelectorAll('#faces img')].filter(i => i.getBoundingClientRect().top < vh)
          .every(i => i.complete && i.naturalWidth > 0); }""")
    out["viewport_images_ms"] = page.evaluate("performance.now()")
    out["tiles_after_interactive"] = page.locator("#faces .face").count()
    t0 = time.perf_counter()
    page.evaluate("""async () => { while (!document.getElementById('faces-more').hidden) {
        document.getElementById('faces-more').scrollIntoView(); await new Promise(r => setTimeout(r, 50)); } }""")
    page.wait_for_function("() => document.querySelectorAll('#faces .face').length >= 1000")
    out["all_faces_ms_after_interactive"] = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    page.keyboard.press("a")
    page.wait_for_selector("#sel-count:has-text('1000 selected')")
    out["select_all_1000_ms"] = (time.perf_counter() - t0) * 1000
    ctx.close()
    return out


def measure_queue(browser, url, state, run_id) -> dict:
    ctx = browser.new_context(storage_state=state, viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{url}/runs/{run_id}/review/?state=pending&ordering=priority")
    page.wait_for_selector("body[data-ready=queue]")
    out = page.evaluate(PAINT)
    out["rows"] = page.locator("#queue tbody tr[data-cluster]").count()
    t0 = time.perf_counter()
    page.click("#queue-more")
    page.wait_for_function("() => document.querySelectorAll('#queue tbody tr[data-cluster]').length >= 200")
    out["next_page_ms"] = (time.perf_counter() - t0) * 1000
    ctx.close()
    return out


def api_times(browser, url, state, run_id, deep) -> dict:
    ctx = browser.new_context(storage_state=state)
    page = ctx.new_page()
    page.goto(url + "/healthz")
    res = page.evaluate("""async ([run, deep]) => {
      const t = async (u) => { const a = performance.now(); const r = await fetch(u); await r.json(); return performance.now() - a; };
      const top = [], deepT = [];
      const b64 = (v) => btoa(JSON.stringify(v)).replace(/\\+/g, '-').replace(/\\//g, '_');
      // deep: the page after the cluster 99.8% of the way down the queue
      for (let i = 0; i < 5; i++) top.push(await t(`/api/runs/${run}/clusters/?limit=100`));
      for (let i = 0; i < 5; i++) deepT.push(await t(`/api/runs/${run}/clusters/?limit=100&cursor=${b64(deep)}`));
      return {top, deep: deepT};
    }""", [run_id, deep])
    ctx.close()
    return {"queue_page_top_ms": statistics.median(res["top"]), "queue_page_after_cursor_ms": statistics.median(res["deep"])}


def summarize(samples: list[dict]) -> dict:
    keys = [k for k in samples[0] if isinstance(samples[0][k], (int, float))]
    return {k: {"median": round(statistics.median([s[k] for s in samples if s[k] is not None]), 1),
                "min": round(min(s[k] for s in samples if s[k] is not None), 1),
                "max": round(max(s[k] for s in samples if s[k] is not None), 1)} for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=1000)
    ap.add_argument("--clusters", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fc-review-bench-"))
    env = dict(os.environ)
    env.update({"FACECURATE_DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}", "FACECURATE_MEDIA_ROOT": str(tmp / "media"),
                "FACECURATE_ARTIFACT_ROOT": str(tmp / "artifacts"), "FACECURATE_STATIC_ROOT": str(tmp / "static"),
                "FACECURATE_IMPORT_ROOT": str(tmp / "import"), "DJANGO_SETTINGS_MODULE": "facecurate.settings"})
    (tmp / "import").mkdir()
    os.environ.update(env)
    facts = machine()
    t0 = time.perf_counter()
    made = populate(tmp / "media", args.faces, args.clusters)
    made["populate_s"] = round(time.perf_counter() - t0, 1)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "facecurate.wsgi:application", "--bind",
                               f"127.0.0.1:{port}", "--workers", "2", "--timeout", "300"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(url)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            facts["chromium"] = browser.version
            state = login(browser.new_context(), url)
            measure_cluster(browser, url, state, made["cluster"])  # warm the server once
            measure_queue(browser, url, state, made["queue_run"])
            cluster = [measure_cluster(browser, url, state, made["cluster"]) for _ in range(args.repeats)]
            queue = [measure_queue(browser, url, state, made["queue_run"]) for _ in range(args.repeats)]
            api = api_times(browser, url, state, made["queue_run"], made["deep_cursor"])
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"machine": facts, "data": made, "repeats": args.repeats, "server": "gunicorn, 2 workers, SQLite",
              "cluster_1000_faces": summarize(cluster), "queue_100k_clusters": summarize(queue), "api": api,
              "command": "PYTHONPATH=. FACECURATE_CACHE=/work/main/.cache .venv/bin/python bench/review_ui.py"}
    from bench.harness import write_results

    write_results("review_ui", result, markdown(result), out_dir=Path(args.out))
    print(markdown(result))


def markdown(r: dict) -> str:
    m, c, q = r["machine"], r["cluster_1000_faces"], r["queue_100k_clusters"]

    def cell(d, k):
        return f"{d[k]['median']:.0f} ({d[k]['min']:.0f}–{d[k]['max']:.0f})" if k in d else "–"

    lines = [
        "# Review UI: time to first paint and to interactive", "",
        f"Command: `{r['command']}`  ",
        f"Machine: {m['cpu']}, {m['cpu_count']} cores (load average 1/5/15 min at start "
        f"{m['load_average_1_5_15']}), {m['memory_gib']} GiB RAM; Chromium {m.get('chromium', '?')} headless; "
        f"{r['server']}.  ",
        f"Each page opened {r['repeats']} times in a fresh browser context after one warm-up; median (min–max), ms "
        "from navigation start.", "",
        "| page | first paint | interactive | other |", "|---|---|---|---|",
        f"| cluster of {r['data']['cluster_size']:,} real faces (200 drawn first) | {cell(c, 'first_paint_ms')} | "
        f"{cell(c, 'interactive_ms')} | viewport thumbnails decoded {cell(c, 'viewport_images_ms')}; all 1,000 tiles "
        f"after scrolling {cell(c, 'all_faces_ms_after_interactive')} more; select all 1,000 {cell(c, 'select_all_1000_ms')} |",
        f"| review queue of {r['data']['queue_clusters']:,} clusters (100 rows drawn first) | {cell(q, 'first_paint_ms')} | "
        f"{cell(q, 'interactive_ms')} | next 100 rows {cell(q, 'next_page_ms')} |", "",
        f"Queue API (keyset, 100 rows), seen from the page: first page {r['api']['queue_page_top_ms']:.0f} ms, page "
        f"after a cursor 99.8 % down the queue {r['api']['queue_page_after_cursor_ms']:.0f} ms.", "",
        "Interactive = the page's `fc-interactive` mark: first rows/faces drawn, keys and clicks bound, the "
        "cluster's lease held. The cluster page loads 200 faces per request and the next page as the grid's end "
        "scrolls into view; the queue loads 100 clusters per request (keyset pagination, so a page deep in the "
        "queue costs what the first does). Thumbnails come through the signed-in media view (each request checks "
        "the session and role), 2 gunicorn workers on the 2 shared cores; Chromium fetches the lazy images near "
        "the viewport first.", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
