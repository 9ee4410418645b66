"""Retraining (the paper's Sec. 3.3 / 4): labeled faces plus the pseudo-identities of reviewed runs.

``start_retraining`` checks the request and queues a Job of kind ``retrain`` (Celery task
``facecurate.ml.retrain``, "gpu" queue). ``retrain_work`` is what that job runs under the job runner:

1. **gather** (:func:`gather`): DB rows -> the inputs of :func:`pipeline.retraining.training_set.build_training_set`.
   Review rules: faces a reviewer excluded (``RunFace.excluded != ''``) and faces of dismissed clusters
   are left out; faces with no cluster are left out (``unclustered``); moved or merged faces count
   under their current ``RunFace.cluster``; a confirmed cluster counts with p- = 0; a cluster with an
   ``assigned_identity`` joins that labeled identity's class. Before anything, a seeded fraction of the
   labeled identities (``holdout_fraction``, ``holdout_seed``; identities with >= 2 faces) is held out:
   no training row uses them (clusters assigned to them are left out too) and they are the
   evaluation's unseen identities.
2. **unchanged?** The sha256 of (parent, the training rows' face ids, classes and weights, settings) is
   compared with earlier versions' ``config.input_hash``: a match ends the job with
   ``{"unchanged": true, "version": <id>}`` and no new version.
3. **train** (:func:`pipeline.recognition.training.train_on_crops`, CosFace weighted by the rows' weights; with
   ``lowres_copies``, two low-resolution copies of every labeled face train with it, :func:`training_inputs`): progress
   per step (epoch, loss, faces/s, ETA), a cancel check between batches, a checkpoint every epoch
   under ``ARTIFACT_ROOT/checkpoints/``; a re-run (or a requeue after a dead worker) resumes there.
4. A new ``RecognizerVersion`` (kind checkpoint, its own file, ``parent`` set; never the parent's file; state
   ``evaluating``), then **evaluate** (:mod:`.retrain_eval`): the new version and its parent on the same
   benchmarks, including the new domain: a seeded fraction of the runs' own clusters held out whole before
   training (``pseudo_holdout_fraction``) and any labeled ``eval_datasets`` named in the request. The verdict
   (:mod:`.retrain_verdict`: better / not_better / unknown) and state ``ready`` are stored with the metrics.
   A cancel or failure during evaluation deletes the version (the checkpoint stays for a re-run).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from django.db import transaction

from facecurate.datasets.models import Dataset, Face
from facecurate.jobs.models import Job
from facecurate.jobs.runner import JobContext, JobFailed, JobLost
from pipeline.retraining.lowres import with_lowres_copies
from pipeline.retraining.recipe import DEFAULT_RECIPE as RECIPE
from pipeline.retraining.training_set import RetrainConfig, TrainingSet, UnlabeledFaces, build_training_set

from ..models import Artifact, RecognizerVersion
from . import artifacts

log = logging.getLogger(__name__)

#: Request options and their defaults (the API serializer and the admin form use the same names). The
#: training recipe's values come from ``pipeline.retraining.recipe.DEFAULT_RECIPE`` (chosen on bench/retrain_domain.py's
#: validation people); ``lr`` None means the recipe's for 'sface', 1e-3 for 'mobilefacenet'.
DEFAULTS: dict[str, Any] = {
    "gamma": RECIPE.gamma, "weighting": RECIPE.weighting, "overlap": "discard",
    "min_cluster_size": RECIPE.min_cluster_size, "max_faces_per_cluster": RECIPE.max_faces_per_cluster,
    "max_clusters": None, "holdout_fraction": 0.2, "holdout_seed": 0,
    "backbone": "sface", "trainable_blocks": RECIPE.trainable_blocks, "epochs": RECIPE.epochs, "lr": None,
    "batch_size": RECIPE.batch_size, "seed": 0, "close_class_threshold": RECIPE.close_class_threshold,
    "lowres_copies": RECIPE.lowres_copies, "lfw_pairs": True,
}
BACKBONES = ("sface", "mobilefacenet")
#: The guard's options (issue 15): a seeded fraction of the runs' own clusters held out, whole, as the new
#: domain's evaluation identities (no training row uses them).
GUARD_DEFAULTS: dict[str, Any] = {"pseudo_holdout_fraction": 0.2, "pseudo_holdout_seed": 0}


class RetrainRequestError(ValueError):
    """A retraining that cannot start (400)."""


@dataclass
class Gathered:
    """What the DB holds for one retraining, as arrays."""

    labeled_face_ids: np.ndarray  # (L,) training faces of the labeled datasets
    labeled_identity: np.ndarray  # (L,) their identity ids
    held_out_face_ids: np.ndarray  # faces of the held-out identities (evaluation only)
    held_out_identity: np.ndarray
    unlabeled: UnlabeledFaces
    report: dict[str, Any] = field(default_factory=dict)
    pseudo_held_face_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # held-out clusters
    pseudo_held_cluster: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # their cluster ids


def check_options(options: dict | None) -> dict[str, Any]:
    """The options with defaults filled in; RetrainRequestError names a bad one."""
    known = {**DEFAULTS, **GUARD_DEFAULTS}
    opts = {**known, **{k: v for k, v in (options or {}).items() if k in known}}
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise RetrainRequestError(f"unknown options: {', '.join(unknown)}")
    if opts["weighting"] not in ("soft", "hard"):
        raise RetrainRequestError("weighting must be 'soft' or 'hard'")
    if opts["backbone"] not in BACKBONES:
        raise RetrainRequestError(f"backbone must be one of {', '.join(BACKBONES)}")
    for key in ("holdout_fraction", "pseudo_holdout_fraction"):
        if not 0 <= float(opts[key]) < 1:
            raise RetrainRequestError(f"{key} must be in [0, 1)")
    if not isinstance(opts["lowres_copies"], bool):
        raise RetrainRequestError("lowres_copies must be true or false")
    if opts["backbone"] != "sface":
        opts["trainable_blocks"] = None
    try:
        retrain_config(opts)
        train_config(opts)
    except ValueError as exc:
        raise RetrainRequestError(str(exc)) from None
    return opts


def retrain_config(opts: dict) -> RetrainConfig:
    return RetrainConfig(gamma=float(opts["gamma"]), soft=opts["weighting"] == "soft", overlap=opts["overlap"],
                         min_cluster_size=int(opts["min_cluster_size"]),
                         max_faces_per_cluster=opts["max_faces_per_cluster"], max_clusters=opts["max_clusters"])


def train_config(opts: dict, **extra):
    from pipeline.recognition.training import TrainConfig

    lr = opts["lr"]
    if lr is None and opts["backbone"] == "sface":
        lr = RECIPE.lr
    close = opts.get("close_class_threshold") if opts["backbone"] == "sface" else None  # needs class-means init
    return TrainConfig(backbone=opts["backbone"], trainable_blocks=opts["trainable_blocks"],
                       epochs=int(opts["epochs"]), lr=lr, batch_size=int(opts["batch_size"]),
                       seed=int(opts["seed"]), close_class_threshold=None if close is None else float(close), **extra)


def start_retraining(user, parent: RecognizerVersion, labeled: list[Dataset], runs: list, options: dict | None = None,
                     eval_datasets: list[Dataset] | None = None) -> Job:
    """Queue a retraining job (``job.params`` holds the request); the job's URL tells its progress.
    ``eval_datasets``: labeled datasets of the new domain to score both versions on (never trained on)."""
    eval_datasets = list(eval_datasets or [])
    bad = [d.name for d in [*labeled, *eval_datasets] if not d.is_labeled]
    if bad:
        raise RetrainRequestError(f"not labeled datasets: {', '.join(bad)}")
    both = sorted({d.name for d in labeled} & {d.name for d in eval_datasets})
    if both:
        raise RetrainRequestError(f"an evaluation dataset cannot also be trained on: {', '.join(both)}")
    if not labeled:
        raise RetrainRequestError("at least one labeled dataset is needed")
    opts = check_options(options)  # after the cheap checks: it builds the training config (imports torch)
    unfinished = [r.pk for r in runs if not r.stage_done("store")]
    if unfinished:
        raise RetrainRequestError(f"runs not finished yet: {', '.join(map(str, unfinished))}")
    with transaction.atomic():
        job = Job.objects.create(kind=Job.Kind.RETRAIN, created_by=user, params={
            "parent": parent.pk, "labeled": sorted(d.pk for d in labeled), "runs": sorted(r.pk for r in runs),
            "options": opts, "eval_datasets": sorted(d.pk for d in eval_datasets)})
        job.enqueue()
    return job


# --------------------------------------------------------------------------- gather
def hold_out(identities: np.ndarray, counts: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The held-out identity ids: a seeded ``fraction`` of the identities that have >= 2 faces."""
    eligible = np.sort(identities[counts >= 2])
    n = int(round(fraction * len(eligible)))
    if fraction > 0 and len(eligible) >= 2:
        n = max(n, 1)
    return np.sort(np.random.default_rng(seed).permutation(eligible)[:n])


def gather(labeled_ids: list[int], run_ids: list[int], opts: dict) -> Gathered:
    """DB rows -> labeled arrays, held-out identities and UnlabeledFaces (review rules: module docstring)."""
    from facecurate.runs.models import Cluster, RunFace

    faces = np.array(list(Face.objects.filter(dataset_id__in=labeled_ids, identity__isnull=False)
                          .order_by("id").values_list("id", "identity_id")), dtype=np.int64).reshape(-1, 2)
    idents, counts = np.unique(faces[:, 1], return_counts=True)
    held = hold_out(idents, counts, float(opts["holdout_fraction"]), int(opts["holdout_seed"]))
    is_held = np.isin(faces[:, 1], held)
    rows = list(RunFace.objects.filter(run_id__in=run_ids).order_by("run_id", "id").values_list(
        "run_id", "face_id", "cluster_id", "cluster__review_state", "cluster__assigned_identity_id",
        "overlap_state", "predicted_identity_id", "p_minus", "excluded", "original_cluster_id"))
    # One face, one class: of several runs' rows for a face, the newest decision (a row a person acted on:
    # excluded, in a confirmed cluster, or moved) wins; with no decision anywhere, the newest run's row.
    newest: dict[int, tuple] = {}
    for i, row in enumerate(rows):
        decided = bool(row[8]) or row[3] == Cluster.Review.CONFIRMED or row[2] != row[9]
        if decided or row[1] not in newest or not newest[row[1]][2]:
            newest[row[1]] = (i, row, decided)
    several = len(rows) - len(newest)
    rows = [row[:9] for _, row, _ in sorted(newest.values())]
    left_out = {"excluded_by_reviewer": 0, "cluster_dismissed": 0, "assigned_to_held_out_identity": 0,
                "assigned_to_identity_outside_labeled_sets": 0}
    kept = []
    labeled_set, held_set = set(idents.tolist()), set(held.tolist())
    for run_id, face_id, cl, state, assigned, ov, pred, p, excluded in rows:
        if excluded:
            left_out["excluded_by_reviewer"] += 1
        elif cl is not None and state == Cluster.Review.DISMISSED:
            left_out["cluster_dismissed"] += 1
        elif cl is not None and assigned is not None and assigned in held_set:
            left_out["assigned_to_held_out_identity"] += 1
        elif cl is not None and assigned is not None and assigned not in labeled_set:
            left_out["assigned_to_identity_outside_labeled_sets"] += 1
        else:
            kept.append((run_id, face_id, -1 if cl is None else cl, state == Cluster.Review.CONFIRMED,
                         -1 if assigned is None or cl is None else assigned, ov,
                         -1 if pred is None or pred in held_set else pred, np.nan if p is None else p))
    kept, pseudo_ids, pseudo_cluster, pseudo_report = hold_out_clusters(
        kept, float(opts["pseudo_holdout_fraction"]), int(opts["pseudo_holdout_seed"]))
    cols = list(zip(*kept)) if kept else [[]] * 8
    unl = UnlabeledFaces(
        run_id=np.asarray(cols[0], np.int64), face_id=np.asarray(cols[1], np.int64),
        cluster_id=np.asarray(cols[2], np.int64), cluster_confirmed=np.asarray(cols[3], bool),
        cluster_assigned_identity=np.asarray(cols[4], np.int64), overlap_state=np.asarray(cols[5], np.int64),
        predicted_identity=np.asarray(cols[6], np.int64), p_minus=np.asarray(cols[7], np.float64))
    report = {"labeled_datasets": labeled_ids, "runs": run_ids, "run_faces": len(rows),
              "same_face_rows_dropped": several,
              "left_out_before_rules": left_out,
              "held_out": {"fraction": float(opts["holdout_fraction"]), "seed": int(opts["holdout_seed"]),
                           "identities": held.tolist(), "faces": int(is_held.sum()),
                           "rule": "seeded fraction of labeled identities with >= 2 faces; no training row uses them"},
              "held_out_pseudo": pseudo_report}
    return Gathered(labeled_face_ids=faces[~is_held, 0], labeled_identity=faces[~is_held, 1],
                    held_out_face_ids=faces[is_held, 0], held_out_identity=faces[is_held, 1], unlabeled=unl,
                    report=report, pseudo_held_face_ids=pseudo_ids, pseudo_held_cluster=pseudo_cluster)


def hold_out_clusters(kept: list[tuple], fraction: float, seed: int) -> tuple[list[tuple], np.ndarray, np.ndarray, dict]:
    """Hold out a seeded ``fraction`` of the runs' pseudo-identities, whole clusters, for the domain benchmark.

    Eligible: clusters nobody confirmed or assigned to an identity (reviewed work stays in training), with
    >= 2 kept faces. At least 2 are held out when 4 or more are eligible (TAR needs two identities).
    ``kept`` rows are gather's tuples (run, face, cluster, confirmed, assigned, overlap, predicted, p-);
    returns (the rows left for training, held-out face ids, their cluster ids, a report)."""
    sizes: dict[int, int] = {}
    for row in kept:
        if row[2] >= 0 and not row[3] and row[4] < 0:
            sizes[row[2]] = sizes.get(row[2], 0) + 1
    eligible = np.asarray(sorted(c for c, n in sizes.items() if n >= 2), np.int64)
    n = int(round(fraction * len(eligible)))
    if fraction > 0 and len(eligible) >= 4:
        n = max(n, 2)
    held = set(np.random.default_rng(seed).permutation(eligible)[:n].tolist())
    out = [r for r in kept if r[2] not in held]
    taken = [(r[1], r[2]) for r in kept if r[2] in held]
    ids = np.asarray([f for f, _ in taken], np.int64)
    clusters = np.asarray([c for _, c in taken], np.int64)
    report = {"fraction": fraction, "seed": seed, "eligible_clusters": int(len(eligible)), "clusters": sorted(held),
              "faces": int(len(ids)),
              "rule": "seeded fraction of unreviewed, unassigned clusters with >= 2 faces (at least 2 when 4 or "
                      "more are eligible), held out whole: no training row uses them; labels are the cluster ids"}
    return out, ids, clusters, report


def training_set(g: Gathered, opts: dict) -> tuple[TrainingSet, np.ndarray, dict]:
    """The TrainingSet, the face id of each of its rows, and the whole report (gather + build rules)."""
    ts = build_training_set(g.labeled_identity, g.unlabeled, retrain_config(opts))
    missing = ts.report["dropped"].get("p_minus_missing", 0)
    used = sum(ts.report["kept"].get(s, 0) for s in ("pseudo", "overlap"))
    if opts["weighting"] == "soft" and missing and missing >= used:
        # Soft weighting is (1 - p-)^gamma: with no p- there is nothing to weight by. Dropping those faces
        # silently would train on the labeled set alone and call it a pseudo-label run.
        raise JobFailed(f"soft weighting needs p-, but {missing} pseudo-labeled faces have none (their run's p- fit "
                        f"was degenerate; see the run's uncertainty report) against {used} that do: use "
                        "weighting 'hard', or review and confirm those clusters (confirmed clusters count as p- 0)")
    face_ids = ts.face_id.copy()
    lab = ts.source == "labeled"
    face_ids[lab] = g.labeled_face_ids[ts.row[lab]]
    report = {**g.report, **ts.report, "faces_used_twice": int(len(face_ids) - len(np.unique(face_ids)))}
    return ts, face_ids.astype(np.int64), report


def class_keys(ts: TrainingSet) -> list[str]:
    """A stable name per class: ``identity-<id>`` or ``run-<run>-cluster-<cluster>``."""
    return [f"identity-{i}" if i >= 0 else f"run-{r}-cluster-{c}"
            for i, (r, c) in zip(ts.class_identity.tolist(), ts.class_cluster.tolist())]


def input_hash(parent: RecognizerVersion, ts: TrainingSet, face_ids: np.ndarray, opts: dict) -> str:
    """sha256 of the parent, every training row (face, class, weight) and the settings."""
    keys = class_keys(ts)
    rows = sorted(zip(face_ids.tolist(), (keys[c] for c in ts.class_index.tolist()),
                      (round(float(w), 6) for w in ts.weight.tolist())))
    settings = {k: v for k, v in opts.items() if k != "lfw_pairs"}
    blob = json.dumps({"parent": parent.pk, "parent_path": parent.path, "rows": rows, "settings": settings},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------- the job
def _state_path(job: Job):
    return artifacts.artifact_path(f"checkpoints/retrain-{job.pk}.state.json")


def _train(ctx: JobContext, parent: RecognizerVersion, ts: TrainingSet, face_ids: np.ndarray, opts: dict,
           digest: str) -> tuple[str, dict]:
    """Train (or resume) the job's checkpoint; returns its path relative to ARTIFACT_ROOT and the attempts."""
    from facecurate.recognition.services.embeddings import load_crops
    from pipeline.recognition.checkpoint import load_checkpoint
    from pipeline.recognition.training import train_on_crops

    job = ctx.job
    rel = f"checkpoints/retrain-{job.pk}.pt"
    path, state_path = artifacts.artifact_path(rel), _state_path(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    resume = None
    if path.is_file() and state.get("input_hash") == digest:
        resume = path
    elif path.is_file():
        path.unlink()  # the inputs changed since that checkpoint: start again
        state = {}
    start_epoch = int(load_checkpoint(path)["epoch"]) if resume else 0
    attempts = [*state.get("attempts", []), {"start_epoch": start_epoch, "started": time.time()}]
    state_path.write_text(json.dumps({"input_hash": digest, "attempts": attempts}))
    init = None
    if parent.kind == RecognizerVersion.Kind.CHECKPOINT and parent.config.get("backbone") == opts["backbone"]:
        init = str(artifacts.artifact_path(parent.path))
    cfg = train_config(opts, init_checkpoint=init, log_every=1)
    ctx.progress(0, len(face_ids), stage="load_crops", force=True)
    crops, labels, weights = training_inputs(ts, load_crops(face_ids.tolist()), opts)
    last = {"epoch": start_epoch}

    def progress(current: int, total: int, **info: Any) -> None:
        ctx.check_cancel()
        phase = info.get("phase")
        if phase in ("train", "epoch"):
            if phase == "epoch":
                last["epoch"] = info["epoch"]
            ctx.progress(current, total, stage="train", epoch=info["epoch"], epochs=info["epochs"],
                         epochs_done=last["epoch"], loss=round(float(info["loss"]), 5),
                         faces_per_s=round(float(info["rate"]), 1), resumed_from_epoch=start_epoch)
        else:
            ctx.progress(current, total, stage=f"train_{phase}")

    train_on_crops(cfg, crops, labels, weights=weights, out_path=path, progress=progress, resume_from=resume)
    attempts[-1]["end_epoch"] = int(cfg.epochs)
    state_path.write_text(json.dumps({"input_hash": digest, "attempts": attempts}))
    return rel, {"attempts": [{k: v for k, v in a.items() if k != "started"} for a in attempts],
                 "lowres_copies": int(len(labels) - len(ts))}


def training_inputs(ts: TrainingSet, crops: np.ndarray, opts: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(crops, class keys, weights) that train: the training set's rows and, with ``lowres_copies``, low-resolution
    copies of its labeled faces (``pipeline.retraining.lowres``; pseudo-labeled faces get none)."""
    labels = np.asarray(class_keys(ts))[ts.class_index]
    if not opts.get("lowres_copies"):
        return crops, labels, ts.weight
    return with_lowres_copies(crops, labels, ts.weight, ts.source == "labeled")


def _new_version(job: Job, parent: RecognizerVersion, rel: str, opts: dict, digest: str, report: dict,
                 training: dict) -> RecognizerVersion:
    from pipeline.recognition.checkpoint import load_checkpoint

    ckpt = load_checkpoint(artifacts.artifact_path(rel))
    m = ckpt["metrics"]
    with transaction.atomic():
        artifacts.record(rel, Artifact.Kind.CHECKPOINT, job)
        return RecognizerVersion.objects.create(
            name=f"retrain-{job.pk.hex[:12]}", kind=RecognizerVersion.Kind.CHECKPOINT, path=rel, parent=parent,
            job=job, created_by=job.created_by, state=RecognizerVersion.State.EVALUATING,
            verdict=RecognizerVersion.Verdict.UNKNOWN,
            config={**ckpt["config"], "input_hash": digest, "retrain": opts, "dim": 128,
                    "labeled_datasets": job.params["labeled"], "runs": job.params["runs"]},
            training_summary={**report, "training": {
                **training, "history": m["history"], "final_loss": m["final_loss"], "num_samples": m["num_samples"],
                "num_classes": m["num_classes"], "train_seconds": round(m["train_seconds"], 2),
                "device": m["device"], "trunk_cached": m["trunk_cached"]}})


def retrain_work(ctx: JobContext):
    """The retraining job (see the module docstring); resumes wherever it stopped."""
    job = ctx.job
    p = job.params
    opts = check_options(p["options"])
    try:
        parent = RecognizerVersion.objects.get(pk=p["parent"])
    except RecognizerVersion.DoesNotExist:
        raise JobFailed(f"parent version {p['parent']} no longer exists") from None
    version = RecognizerVersion.objects.filter(job=job).first()
    if version is None:
        ctx.progress(0, 1, stage="gather", force=True)
        g = gather(p["labeled"], p["runs"], opts)
        try:
            ts, face_ids, report = training_set(g, opts)
        except ValueError as exc:
            raise JobFailed(f"cannot build the training set: {exc}") from None
        if ts.num_classes < 2 or len(ts) < 2:
            raise JobFailed(f"the training set has {len(ts)} faces in {ts.num_classes} classes; need 2 or more")
        digest = input_hash(parent, ts, face_ids, opts)
        same = (RecognizerVersion.objects.filter(config__input_hash=digest).exclude(job=job)
                .exclude(state=RecognizerVersion.State.FAILED).first())
        if same is not None:
            ctx.set_result(unchanged=True, version=same.pk, input_hash=digest, training_set=report,
                           message=f"inputs unchanged since version {same.name}: no new version")
            ctx.progress(1, 1, stage="done", force=True)
            return None
        ctx.set_result(training_set=report, input_hash=digest)
        ctx.check_cancel()
        rel, training = _train(ctx, parent, ts, face_ids, opts, digest)
        version = _new_version(job, parent, rel, opts, digest, report, training)
    else:
        g = gather(p["labeled"], p["runs"], opts)
    ctx.set_result(version=version.pk, unchanged=False)
    evaluate_or_discard(ctx, version, parent, g, opts)
    ctx.set_result(metrics=headline(version.metrics), verdict=version.verdict)
    ctx.progress(1, 1, stage="done", force=True)
    return None


def evaluate_or_discard(ctx: JobContext, version: RecognizerVersion, parent: RecognizerVersion, g: Gathered,
                        opts: dict) -> None:
    """Evaluate; a cancel or failure meanwhile deletes the version (its checkpoint stays for a re-run), so a
    cancelled or failed retraining leaves no version behind."""
    try:
        _evaluate(ctx, version, parent, g, opts)
    except JobLost:
        raise  # another worker holds the job now and carries on with the version
    except Exception:  # JobCancelled, JobFailed or an error
        pk = version.pk
        _discard(version)
        ctx.set_result(version=None, discarded_version=pk)
        raise


def _evaluate(ctx: JobContext, version: RecognizerVersion, parent: RecognizerVersion, g: Gathered, opts: dict) -> None:
    """Score the version and its parent, then store the metrics, the verdict and state ready."""
    from .retrain_eval import evaluate_version
    from .retrain_verdict import verdict

    if not version.metrics.get("benchmarks"):
        ctx.check_cancel()
        metrics = evaluate_version(version, parent, held_out=(g.held_out_face_ids, g.held_out_identity),
                                   held_out_pseudo=(g.pseudo_held_face_ids, g.pseudo_held_cluster),
                                   eval_datasets=ctx.job.params.get("eval_datasets") or [],
                                   run_ids=ctx.job.params["runs"], lfw_pairs=opts["lfw_pairs"], ctx=ctx)
        version.metrics = {**metrics, "final_loss": version.training_summary["training"]["final_loss"]}
    ctx.check_cancel()
    version.verdict, version.verdict_detail = verdict(version.metrics["benchmarks"], parent.pk, version.pk)
    version.state = RecognizerVersion.State.READY
    version.save(update_fields=["metrics", "verdict", "verdict_detail", "state"])


def _discard(version: RecognizerVersion) -> None:
    """Delete a version whose evaluation did not finish (never one that is active or has children)."""
    if version.is_active or version.children.exists():
        RecognizerVersion.objects.filter(pk=version.pk).update(state=RecognizerVersion.State.FAILED)
        return
    version.delete()


def headline(metrics: dict) -> dict:
    """{benchmark: {version id: {metric: value}}} without the ROC points."""
    out = {}
    for name, bench in (metrics.get("benchmarks") or {}).items():
        if "skipped" in bench:
            out[name] = {"skipped": bench["skipped"]}
        else:
            out[name] = {v: {k: x for k, x in m.items() if k != "roc"} for v, m in bench.get("versions", {}).items()}
    return out


def as_dict(ts: TrainingSet) -> dict:
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in asdict(ts).items()}
