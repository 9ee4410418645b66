"""Evaluation of a retrained version and its parent on the same benchmarks (stored in ``version.metrics``).

* ``eval_datasets`` (the new domain, when the request names labeled datasets of it) and ``held_out_pseudo``
  (the runs' own clusters the job held out whole before training, labeled by cluster): TAR at FAR and
  rank-k as below. The verdict (:mod:`.retrain_verdict`) is read off these first.
* ``held_out_identities``: TAR at FAR 1e-3 / 1e-4 over all pairs and rank-1 / rank-5 identification
  (one gallery face per identity, seeded) on the faces of the labeled identities the retraining held out
  before training (no training row used them). With few faces the 1e-4 point has too few impostor
  pairs and is reported as null.
* ``clustering``: each run with ``options.truth_from_folders``: its disjoint (clustered) faces embedded by
  each version, clustered with the run's method and settings, scored against the source folders' names.
* ``lfw_pairs``: the LFW View 2 protocol (``pairs.txt``, 10 folds) read from
  ``FACECURATE_SHARED_DATA/lfw`` (``settings.SHARED_DATA``); skipped, with the reason, when that folder
  is absent. Its crops (YuNet + 5-point alignment) are kept in ``ARTIFACT_ROOT/benchmarks/``, keyed by the
  detector and the image files, and each version's result in a report artifact, so a version is scored once.
  A fine-tuned SFace runs only its trained stages over the frozen trunk's cached activations
  (:mod:`.eval_cache`).

Progress: each benchmark is a job stage of its own (``evaluate: <benchmark>``) counting the faces embedded
for all its versions, so it never goes backwards and its ETA is its own.

Every benchmark stores, per version id, the headline numbers and ROC points (at most ``ROC_POINTS``)
that the UI draws.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.utils import timezone

from pipeline.clustering.metrics import evaluate_clustering
from pipeline.evaluation.verification import evaluate_features, lfw_verification, read_lfw_pairs, summary
from pipeline.features import FeatureSet, atomic_path

from ..models import Artifact, RecognizerVersion
from . import artifacts
from .embeddings import load_crops
from .eval_cache import embed_fixed_set
from .versions import embedder_for

ROC_POINTS = 120
FARS = (1e-3, 1e-4)
BATCH = 64


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _thin(roc: dict) -> dict:
    far, tar = np.asarray(roc["far"]), np.asarray(roc["tar"])
    if len(far) > ROC_POINTS:
        keep = np.unique(np.linspace(0, len(far) - 1, ROC_POINTS).astype(int))
        far, tar = far[keep], tar[keep]
    return {"far": [float(f) for f in far], "tar": [float(t) for t in tar]}


def stage_name(benchmark: str) -> str:
    """The job stage of one benchmark: progress is per benchmark, by name, and never goes backwards in it."""
    return f"evaluate: {benchmark}"


def embed_crops(version: RecognizerVersion, crops: np.ndarray, ctx=None, what: str = "", *, done: int = 0,
                total: int | None = None) -> np.ndarray:
    """Embed ``crops`` in batches. Progress goes to stage ``evaluate: <what>`` as ``done + faces so far`` of
    ``total`` (the benchmark's faces times the versions it embeds), so it only ever goes up."""
    embedder = embedder_for(version, _device())
    total = len(crops) if total is None else total
    out = []
    for s in range(0, len(crops), BATCH):
        if ctx is not None:
            ctx.check_cancel()
            ctx.progress(done + s, total, stage=stage_name(what), benchmark=what, version=version.pk)
        out.append(embedder.embed(crops[s:s + BATCH]))
    if ctx is not None:
        ctx.progress(done + len(crops), total, stage=stage_name(what), benchmark=what, version=version.pk, force=True)
    return np.concatenate(out) if out else np.zeros((0, 128), np.float32)


def identity_benchmark(name: str, versions: list[RecognizerVersion], face_ids: np.ndarray, identity: np.ndarray,
                       ctx=None, *, why_too_few: str = "") -> dict:
    """TAR at FAR and rank-k of each version on labeled faces (``identity``: their identity or pseudo-identity)."""
    n_ids = len(np.unique(identity))
    if n_ids < 2:
        return {"skipped": f"{n_ids} identities (need 2 or more{'; ' + why_too_few if why_too_few else ''})"}
    crops = load_crops(face_ids.tolist())
    out = {"identities": int(n_ids), "faces": int(len(face_ids)), "fars": list(FARS), "versions": {}}
    for i, v in enumerate(versions):
        emb = embed_crops(v, crops, ctx, name, done=i * len(crops), total=len(versions) * len(crops))
        rep = evaluate_features(FeatureSet(emb, np.asarray([str(f) for f in face_ids]), identity.astype(str)),
                                fars=FARS, name=v.name)
        out["versions"][str(v.pk)] = {**summary(rep), "roc": _thin(rep["verification"]["roc"]),
                                      "num_impostor_pairs": rep["verification"]["num_impostor"]}
    return out


def held_out_benchmark(versions: list[RecognizerVersion], face_ids: np.ndarray, identity: np.ndarray, ctx=None) -> dict:
    return identity_benchmark("held_out_identities", versions, face_ids, identity, ctx,
                              why_too_few="raise holdout_fraction")


def eval_datasets_benchmark(versions: list[RecognizerVersion], dataset_ids: list[int], ctx=None) -> dict:
    """The labeled datasets of the new domain named in the request: every face with an identity."""
    from facecurate.datasets.models import Face

    if not dataset_ids:
        return {"skipped": "no evaluation dataset named (eval_datasets)"}
    rows = np.asarray(list(Face.objects.filter(dataset_id__in=dataset_ids, identity__isnull=False)
                           .order_by("id").values_list("id", "identity_id")), np.int64).reshape(-1, 2)
    out = identity_benchmark("eval_datasets", versions, rows[:, 0], rows[:, 1], ctx)
    return {"datasets": sorted(dataset_ids), **out}


def clustering_benchmark(versions: list[RecognizerVersion], run_ids: list[int], ctx=None) -> dict:
    from facecurate.runs.models import PipelineRun, RunFace
    from facecurate.runs.services.stages import truth_names
    from pipeline.clustering.methods import cluster

    runs = [r for r in PipelineRun.objects.filter(pk__in=run_ids).order_by("pk") if r.options.get("truth_from_folders")]
    if not runs:
        return {"skipped": "no run of this retraining has ground truth (options.truth_from_folders)"}
    out = {"runs": []}
    for run in runs:
        # the faces the folder names: each photo's primary face (truth_names gives the others no name)
        ids = np.asarray(list(RunFace.objects.filter(run=run, overlap_state=0, face__is_primary=True)
                              .order_by("face_id").values_list("face_id", flat=True)), np.int64)
        if len(ids) < 2:
            out["runs"].append({"run": run.pk, "skipped": f"{len(ids)} clustered faces"})
            continue
        truth, crops = truth_names(ids), load_crops(ids.tolist())
        entry = {"run": run.pk, "method": run.method, "params": run.params, "faces": int(len(ids)),
                 "identities": int(len(np.unique(truth))), "versions": {}}
        for i, v in enumerate(versions):
            emb = embed_crops(v, crops, ctx, f"clustering run {run.pk}", done=i * len(crops),
                              total=len(versions) * len(crops))
            labels = cluster(emb, run.method, **run.params)
            entry["versions"][str(v.pk)] = {k: (round(x, 6) if isinstance(x, float) else x)
                                            for k, x in evaluate_clustering(truth, labels).items()}
        out["runs"].append(entry)
    return out


# --------------------------------------------------------------------------- LFW pairs
def lfw_root() -> Path:
    return Path(settings.SHARED_DATA) / "lfw"


def lfw_crops_key(wanted: list[str], det) -> str:
    """What the LFW crops depend on: the detector (model file bytes, thresholds, max side) and every image
    (name, size, mtime). A different detector or a changed file makes a new cache file."""
    images = lfw_root() / "images_deepfunneled"
    h = hashlib.sha256()
    h.update(hashlib.sha256(Path(det.model_path).read_bytes()).digest())
    h.update(json.dumps([det.score_threshold, det.nms_threshold, getattr(det, "max_side", None)]).encode())
    for name in wanted:
        st = (images / name).stat()
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _lfw_crops(ctx=None) -> tuple[np.ndarray, np.ndarray, str]:
    """(relative paths, aligned crops) of every image in pairs.txt; detected once, then read from the artifact
    ``benchmarks/lfw-pairs-crops-<key>.npz`` (key: :func:`lfw_crops_key`)."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.recognition.faces import FaceDetector, detect_and_align, read_image

    images = lfw_root() / "images_deepfunneled"
    wanted = sorted({p for a, b, _, _ in read_lfw_pairs(lfw_root() / "pairs.txt") for p in (a, b)})
    det = FaceDetector()
    key = lfw_crops_key(wanted, det)
    rel = f"benchmarks/lfw-pairs-crops-{key[:24]}.npz"
    path = artifacts.artifact_path(rel)
    if path.is_file():
        arrays = artifacts.read_npz(rel)
        return arrays["paths"], arrays["crops"], key
    paths, crops = [], []

    def one(name: str):
        return detect_and_align(read_image(images / name), det).crop

    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, (name, crop) in enumerate(zip(wanted, pool.map(one, wanted, chunksize=16))):
            if crop is not None:
                paths.append(name)
                crops.append(crop)
            if ctx is not None and i % 64 == 0:
                ctx.check_cancel()
                ctx.progress(i, len(wanted), stage=stage_name("lfw_pairs: detect and align"),
                             benchmark="lfw_pairs: detect and align")
    if ctx is not None:
        ctx.progress(len(wanted), len(wanted), stage=stage_name("lfw_pairs: detect and align"),
                     benchmark="lfw_pairs: detect and align", force=True)
    arrays = {"paths": np.asarray(paths, dtype=str), "crops": np.stack(crops)}
    artifacts.write_npz(rel, Artifact.Kind.REPORT, None, **arrays)
    return arrays["paths"], arrays["crops"], key


def lfw_benchmark(versions: list[RecognizerVersion], ctx=None) -> dict:
    pairs = lfw_root() / "pairs.txt"
    if not pairs.is_file() or not (lfw_root() / "images_deepfunneled").is_dir():
        return {"skipped": f"LFW not found at {lfw_root()} (pairs.txt and images_deepfunneled/; set "
                           "FACECURATE_SHARED_DATA)"}
    out = {"protocol": "LFW View 2, 10 folds, cosine, threshold from the other 9 folds", "source": str(lfw_root()),
           "versions": {}}
    todo = []
    for v in versions:
        path = artifacts.artifact_path(f"benchmarks/lfw-pairs-version-{v.pk}.json")
        if path.is_file():  # a version is scored once
            out["versions"][str(v.pk)] = json.loads(path.read_text())
        else:
            todo.append(v)
    if not todo:
        return out
    paths, crops, key = _lfw_crops(ctx)
    for i, v in enumerate(todo):
        rel = f"benchmarks/lfw-pairs-version-{v.pk}.json"
        path = artifacts.artifact_path(rel)
        t0 = time.perf_counter()
        emb, how = embed_fixed_set(v, crops, key, device=_device(), progress=_lfw_progress(ctx, v, i, len(todo)))
        res = lfw_verification(FeatureSet(emb, paths, None), pairs, allow_missing=True)
        entry = {"lfw_mean": res["mean"], "lfw_std": res["std"], "auc": res["auc"], "num_pairs": res["num_pairs"],
                 "num_missing": res["num_missing"], "embed_seconds": round(time.perf_counter() - t0, 1), **how,
                 "roc": _thin(res["roc"])}
        if ctx is not None:
            n = len(crops)
            ctx.progress((i + 1) * n, len(todo) * n, stage=stage_name("lfw_pairs"), benchmark="lfw_pairs",
                         version=v.pk, force=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(entry))
        artifacts.record(rel, Artifact.Kind.REPORT)
        out["versions"][str(v.pk)] = entry
    return out


def _lfw_progress(ctx, version: RecognizerVersion, i: int, n_versions: int):
    """Progress of one version's LFW embedding: the trunk pass (once per trunk) is a stage of its own; the
    embedding counts in ``evaluate: lfw_pairs`` over all versions to embed, so it only goes up."""
    if ctx is None:
        return None

    def progress(step: str, done: int, total: int) -> None:
        ctx.check_cancel()
        if step == "trunk":
            ctx.progress(done, total, stage=stage_name("lfw_pairs: trunk cache"), benchmark="lfw_pairs: trunk cache",
                         version=version.pk)
        else:
            ctx.progress(i * total + done, n_versions * total, stage=stage_name("lfw_pairs"), benchmark="lfw_pairs",
                         version=version.pk)
    return progress


def evaluate_version(version: RecognizerVersion, parent: RecognizerVersion, *, held_out: tuple, run_ids: list[int],
                     lfw_pairs: bool = True, ctx=None, held_out_pseudo: tuple | None = None,
                     eval_datasets: list[int] | None = None) -> dict:
    """The new version and its parent on the same benchmarks (see the module docstring)."""
    versions = [parent, version]
    t0 = time.perf_counter()
    pseudo = held_out_pseudo if held_out_pseudo is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    benchmarks = {
        "eval_datasets": eval_datasets_benchmark(versions, list(eval_datasets or []), ctx=ctx),
        "held_out_pseudo": identity_benchmark("held_out_pseudo", versions, *pseudo, ctx,
                                              why_too_few="raise pseudo_holdout_fraction or give runs with more "
                                                          "clusters"),
        "held_out_identities": held_out_benchmark(versions, *held_out, ctx=ctx),
        "clustering": clustering_benchmark(versions, run_ids, ctx=ctx),
        "lfw_pairs": lfw_benchmark(versions, ctx=ctx) if lfw_pairs else {
            "skipped": "not asked for (option lfw_pairs is false)"},
    }
    return {"evaluated_at": timezone.now().isoformat(), "compared_with": parent.pk, "device": _device(),
            "evaluate_seconds": round(time.perf_counter() - t0, 1), "benchmarks": benchmarks}


def compare(a: RecognizerVersion, b: RecognizerVersion) -> dict | None:
    """Side by side on the benchmarks one of them was evaluated on with the other; None when neither was."""
    for holder in (a, b):
        bench = (holder.metrics or {}).get("benchmarks") or {}
        found = any(str(a.pk) in (x.get("versions") or {}) and str(b.pk) in (x.get("versions") or {})
                    for x in [*bench.values(), *(bench.get("clustering", {}).get("runs") or [])])
        if found:
            return {"a": a.pk, "b": b.pk, "evaluated_on": holder.pk, "evaluated_at": holder.metrics.get("evaluated_at"),
                    "rows": _rows(bench, a, b), "benchmarks": bench}
    return None


def _rows(bench: dict, a: RecognizerVersion, b: RecognizerVersion) -> list[dict]:
    rows = []

    def add(name: str, versions: dict) -> None:
        va, vb = versions.get(str(a.pk), {}), versions.get(str(b.pk), {})
        for key in sorted(set(va) | set(vb)):
            x, y = va.get(key), vb.get(key)
            if key == "roc" or not all(isinstance(z, (int, float)) or z is None for z in (x, y)):
                continue
            rows.append({"benchmark": name, "metric": key, "a": x, "b": y,
                         "delta": None if x is None or y is None else y - x})

    for name, x in bench.items():
        if name == "clustering":
            for run in x.get("runs", []):
                add(f"clustering run {run['run']}", run.get("versions", {}))
        elif "versions" in x:
            add(name, x["versions"])
    return rows
