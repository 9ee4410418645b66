"""Wall time per stage of a full pipeline run on all 13,233 LFW faces (unlabeled) against a labeled LFW
subset (identities with >= 20 images), with one worker process and with two.

    .venv/bin/python bench/run_stages.py          # PostgreSQL + Redis on 127.0.0.1 (about 30 min on 2 cores)

Everything goes through the product: the images are ingested by the import and manifest paths (detect,
align), then a run is started through the runs service and carried out by real `celery worker`
processes (solo pool, queues default + gpu). Between the two runs the embedding files are deleted, so
the second run embeds everything again. Writes bench/results/run_stages.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "out" / "run_stages"
RESULTS = ROOT / "bench" / "results"
DB = "facecurate_bench_runs"
BROKER = "redis://127.0.0.1:6379/10"
SHARED = Path(os.environ.get("FACECURATE_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


def _env() -> dict:
    import psycopg
    import redis

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB}")
        c.execute(f"CREATE DATABASE {DB}")
    redis.Redis.from_url(BROKER).flushdb()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    env = {**os.environ, "FACECURATE_DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
           "FACECURATE_BROKER_URL": BROKER, "FACECURATE_VAR_DIR": str(OUT / "var"), "FACECURATE_SECRET_KEY": "bench",
           "FACECURATE_IMPORT_ROOT": str(SHARED), "DJANGO_SETTINGS_MODULE": "facecurate.settings",
           "FACECURATE_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    return env


def _workers(env: dict, n: int, tag: str) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "celery", "-A", "facecurate", "worker", "-Q", "default,gpu",
                              "--pool", "solo", "-n", f"{tag}{i}@%h", "-l", "warning", "--without-gossip",
                              "--without-mingle"], cwd=ROOT, env=env, stdout=open(OUT / f"{tag}{i}.log", "w"),
                             stderr=subprocess.STDOUT) for i in range(n)]


def _stop(procs) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=60)


def _wait(job_id, timeout: float):
    from facecurate.jobs.models import Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.is_terminal:
            return job
        time.sleep(1)
    raise SystemExit(f"job {job_id} did not finish in {timeout} s")


def _ingest(env, user) -> dict:
    from django.db import transaction

    from facecurate.datasets.models import Dataset, Face
    from facecurate.jobs.models import Job

    unl = Dataset.objects.create(name="lfw-all", kind="unlabeled")
    lab = Dataset.objects.create(name="lfw-20plus", kind="labeled")
    root = SHARED / "lfw" / "images_deepfunneled"
    people = {d.name: sorted(d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()}
    entries = [{"path": str(p.relative_to(SHARED)), "identity": name} for name, files in people.items()
               if len(files) >= 20 for p in files]
    with transaction.atomic():
        jobs = [Job.objects.create(kind=Job.Kind.INGEST_IMPORT, dataset=unl, created_by=user,
                                   params={"path": "lfw/images_deepfunneled"}),
                Job.objects.create(kind=Job.Kind.INGEST_MANIFEST, dataset=lab, created_by=user,
                                   params={"entries": entries})]
        for j in jobs:
            j.enqueue()
    procs = _workers(env, 2, "ingest")
    t0 = time.perf_counter()
    done = [_wait(j.pk, 7200) for j in jobs]
    secs = time.perf_counter() - t0
    _stop(procs)
    assert all(j.state == "succeeded" for j in done), [j.error for j in done]
    return {"unlabeled_images": unl.images.count(), "unlabeled_faces": Face.objects.filter(dataset=unl).count(),
            "labeled_images": lab.images.count(), "labeled_faces": Face.objects.filter(dataset=lab).count(),
            "labeled_identities": lab.identities.count(), "seconds_two_workers": round(secs, 1),
            "images": [j.result.get("images") for j in done]}, unl, lab


def _stage_walls(run) -> dict:
    out = {}
    for name in run.STAGES:
        s = run.stages.get(name, {})
        if s.get("started_at") and s.get("finished_at"):
            out[name] = round((datetime.fromisoformat(s["finished_at"]) - datetime.fromisoformat(s["started_at"]))
                              .total_seconds(), 1)
    return out


def _one_run(env, user, unl, lab, n_workers: int) -> dict:
    from facecurate.runs.services.start import start_run

    procs = _workers(env, n_workers, f"run{n_workers}-")
    time.sleep(5)
    t0 = time.perf_counter()
    run = start_run(user, unl, [lab], options={"truth_from_folders": True})
    job = _wait(run.job_id, 7200)
    wall = time.perf_counter() - t0
    _stop(procs)
    run.refresh_from_db()
    assert job.state == "succeeded", job.error
    chunks = list(run.chunks.values_list("seconds", "worker"))
    return {"workers": n_workers, "wall_seconds": round(wall, 1), "stage_wall_seconds": _stage_walls(run),
            "embed": {"faces": run.stages["embed"].get("faces"), "chunks": len(chunks),
                      "chunk_seconds_sum": round(sum(c[0] or 0 for c in chunks), 1),
                      "workers_used": len({c[1].split(":")[1] for c in chunks if c[1]})},
            "counts": run.counts, "metrics": run.metrics}


def _reset_embeddings() -> None:
    from facecurate.recognition.models import EmbeddingFile
    from facecurate.recognition.services.artifacts import artifact_path

    for ef in EmbeddingFile.objects.select_related("artifact"):
        artifact_path(ef.artifact.path).unlink(missing_ok=True)
        art = ef.artifact
        ef.delete()
        art.delete()


def _md(r: dict) -> str:
    lines = ["# A full pipeline run on LFW, stage by stage", "", f"Command: `{r['command']}`  ",
             f"Machine: {json.dumps(r['machine'])}", "",
             f"Ingestion (two workers): {r['ingest']['unlabeled_images']:,} LFW images -> "
             f"{r['ingest']['unlabeled_faces']:,} faces unlabeled; labeled subset {r['ingest']['labeled_identities']} "
             f"identities, {r['ingest']['labeled_faces']:,} faces; {r['ingest']['seconds_two_workers']} s.", "",
             "| workers | " + " | ".join(f"{s} s" for s in ("embed", "overlap", "cluster", "uncertainty", "store"))
             + " | whole run s | embed chunks | workers that embedded |", "|---" * 9 + "|"]
    for run in r["runs"]:
        w = run["stage_wall_seconds"]
        lines.append(f"| {run['workers']} | " + " | ".join(str(w.get(s, "")) for s in
                                                          ("embed", "overlap", "cluster", "uncertainty", "store"))
                     + f" | {run['wall_seconds']} | {run['embed']['chunks']} | {run['embed']['workers_used']} |")
    m = r["runs"][0]["metrics"]
    lines += ["", f"Counts: {json.dumps(r['runs'][0]['counts'])}", "",
              f"Ground truth (folder names): {json.dumps({k: v for k, v in m.items() if k != 'clustering'})}; "
              f"clustering: {json.dumps(m.get('clustering'))}", "",
              "The labeled subset's photos are also in the unlabeled set (all 13,233), so those faces come out "
              "overlap with max-logit near 1; the rest are people the labeled set does not know.", ""]
    return "\n".join(lines)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    env = _env()
    import django

    django.setup()
    from django.core.management import call_command

    from facecurate.accounts.roles import create_user
    from bench.harness import facts, write_results

    call_command("migrate", verbosity=0)
    user, _ = create_user("bench", role="staff")
    ingest, unl, lab = _ingest(env, user)
    runs = [_one_run(env, user, unl, lab, 1)]
    _reset_embeddings()
    runs.append(_one_run(env, user, unl, lab, 2))
    result = {"command": "bench/run_stages.py", "machine": facts(), "ingest": ingest, "runs": runs}
    write_results("run_stages", result, _md(result))
    print(_md(result))


if __name__ == "__main__":
    main()
