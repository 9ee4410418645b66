"""The ``store`` stage: the run's artifacts become rows (clusters, per-face results) in one transaction,
plus counts and, where the faces carry ground truth, the overlap and clustering metrics.

Per-cluster summaries come from one sort of the faces by label (not a mask per cluster: 100k clusters
over 1M faces would be 1e11 comparisons); rows go in column by column through COPY on PostgreSQL
(:mod:`.bulk_rows`)."""
from __future__ import annotations

import numpy as np
from django.db import transaction

from facecurate.recognition.services import artifacts

from ..models import Cluster, PipelineRun, RunFace
from .bulk_rows import insert_columns, refresh_statistics
from .member_index import member_embeddings
from .priority import review_priority
from .stages import art_rel, identity_names, norm_name, truth_names


def store_stage(ctx, run: PipelineRun) -> None:
    ov = artifacts.read_npz(art_rel(run, "overlap"))
    cl = artifacts.read_npz(art_rel(run, "clusters"))
    un = artifacts.read_npz(art_rel(run, "uncertainty"))
    face_ids, labels, carried = cl["face_ids"], cl["labels"], cl["carried_from"]
    not_a_face = cl.get("not_a_face", np.zeros(len(face_ids), bool))
    if not (np.array_equal(face_ids, ov["face_ids"]) and np.array_equal(face_ids, un["face_ids"])):
        raise RuntimeError("the run's artifacts disagree on their faces; re-run from the overlap stage")
    p = un["p_minus"]
    k = int(labels.max()) + 1 if len(labels) else 0
    prio = np.zeros(0)
    if k:
        cfg = (run.uncertainty_report or {}).get("priority") or {}
        emb = member_embeddings(run, face_ids) if cfg.get("merge_weight") else None
        prio = review_priority(labels, p, emb, cfg)
    with transaction.atomic():
        RunFace.objects.filter(run=run).delete()
        Cluster.objects.filter(run=run).delete()
        cluster_ids = _make_clusters(run, labels, p, carried, prio, k)
        _make_run_faces(run, face_ids, labels, cluster_ids, ov, un, not_a_face)
    refresh_statistics(Cluster, RunFace)
    run.counts = _counts(ov["state"], labels, not_a_face)
    run.metrics = _metrics(run, face_ids, ov, labels) if run.options.get("truth_from_folders") else {}
    run.save(update_fields=["counts", "metrics"])


def _nullable(x: np.ndarray) -> list:
    """Floats as a list with None where not finite (NULL in the database)."""
    x = np.asarray(x, np.float64)
    out = x.astype(object)
    out[~np.isfinite(x)] = None
    return out.tolist()


def _ids_or_none(x: np.ndarray) -> list:
    out = np.asarray(x, np.int64).astype(object)
    out[np.asarray(x) < 0] = None
    return out.tolist()


def cluster_summaries(labels: np.ndarray, p: np.ndarray, carried: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per cluster 0..k-1 from one stable sort of the faces by label: size, mean and max of the finite p-,
    and the earlier cluster its first face (in face order) was carried from (-1: none)."""
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    p = np.asarray(p, np.float64)
    fin = (labels >= 0) & np.isfinite(p)
    n_fin = np.bincount(labels[fin], minlength=k)
    sums = np.bincount(labels[fin], weights=p[fin], minlength=k)
    mean = np.full(k, np.nan)
    np.divide(sums, n_fin, out=mean, where=n_fin > 0)
    order = np.argsort(labels, kind="stable")
    order = order[labels[order] >= 0]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if k else np.zeros(0, np.int64)
    has = sizes > 0
    mx = np.full(k, np.nan)
    first = np.full(k, -1, np.int64)
    if has.any():
        ps = np.where(np.isfinite(p[order]), p[order], -np.inf)
        mx[has] = np.maximum.reduceat(ps, starts[has])
        mx[np.isneginf(mx)] = np.nan
        first[has] = carried[order][starts[has]]
    return {"sizes": sizes, "mean": mean, "max": mx, "carried": first}


def _make_clusters(run, labels, p, carried, prio, k) -> np.ndarray:
    """Insert the run's clusters; (k,) their database ids by number."""
    s = cluster_summaries(labels, p, carried, k)
    carried_ids = _ids_or_none(s["carried"])
    state = np.where(s["carried"] >= 0, Cluster.Review.CONFIRMED, Cluster.Review.PENDING).tolist()
    # A carried cluster keeps the name and the labeled identity people gave it.
    kept = {c["id"]: c for c in Cluster.objects.filter(pk__in=np.unique(carried[carried >= 0]).tolist())
            .values("id", "name", "assigned_identity_id")}
    insert_columns(Cluster, {
        "run_id": [run.pk] * k, "number": list(range(k)), "size": s["sizes"].tolist(),
        "priority": np.asarray(prio, np.float64).tolist(), "mean_p_minus": _nullable(s["mean"]),
        "max_p_minus": _nullable(s["max"]), "review_state": state, "carried_from_id": carried_ids,
        "name": [kept.get(c, {}).get("name", "") for c in carried_ids],
        "assigned_identity_id": [kept.get(c, {}).get("assigned_identity_id") for c in carried_ids],
    }, k)
    ids = np.zeros(k, np.int64)
    for number, pk in Cluster.objects.filter(run=run, number__isnull=False).values_list("number", "id"):
        ids[number] = pk
    return ids


def _make_run_faces(run, face_ids, labels, cluster_ids, ov, un, not_a_face) -> None:
    n = len(face_ids)
    cluster = _ids_or_none(np.where(labels >= 0, cluster_ids[np.maximum(labels, 0)] if len(cluster_ids) else -1, -1))
    pred = np.asarray(ov["predicted"], np.int64)
    logit = np.asarray(ov["max_logit"], np.float64)
    insert_columns(RunFace, {
        "run_id": [run.pk] * n, "face_id": np.asarray(face_ids, np.int64).tolist(), "max_logit": _nullable(logit),
        "predicted_identity_id": _ids_or_none(pred), "predicted_score": _nullable(np.where(pred >= 0, logit, np.nan)),
        "overlap_state": np.asarray(ov["state"], np.int64).tolist(), "cluster_id": cluster,
        "original_cluster_id": cluster, "p_minus": _nullable(un["p_minus"]), "margin": _nullable(un["margin"]),
        "excluded": np.where(np.asarray(not_a_face, bool), RunFace.Excluded.NOT_A_FACE, "").tolist(),
    }, n)


def _counts(state, labels, not_a_face) -> dict:
    sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, int)
    return {
        "faces": int(len(state)), "overlap": int((state == 1).sum()), "disjoint": int((state == 0).sum()),
        "rejected": int((state == -1).sum()), "clusters": int((sizes > 0).sum()),
        "singletons": int((sizes == 1).sum()), "clustered_faces": int((labels >= 0).sum()),
        "largest_cluster": int(sizes.max()) if sizes.size else 0,
        "not_a_face": int(not_a_face.sum()),
    }


def _metrics(run, face_ids, ov, labels) -> dict:
    """Overlap error rates and clustering quality against the source folders' names (ground truth)."""
    from pipeline.clustering.metrics import evaluate_clustering

    truth = truth_names(face_ids)
    named = truth != ""  # primary faces: the folder names them; background faces are left out
    face_ids, truth, labels = face_ids[named], truth[named], labels[named]
    ov = {k: (v[named] if getattr(v, "shape", None) == named.shape else v) for k, v in ov.items()}
    known = {norm_name(n) for n in identity_names(
        run.labeled_datasets.values_list("identities__id", flat=True)).values()}
    is_known = np.array([t in known for t in truth])
    state = ov["state"]
    out: dict = {"truth": "source folder names (primary faces only)", "faces_without_truth": int((~named).sum()),
                 "known_faces": int(is_known.sum()), "unknown_faces": int((~is_known).sum())}
    if is_known.any():
        out["overlap_fnr_rejected_as_miss"] = float(np.mean(state[is_known] != 1))
        out["overlap_rejected_rate"] = float(np.mean(state[is_known] == -1))
    if (~is_known).any():
        out["disjoint_fpr"] = float(np.mean(state[~is_known] == 1))
        out["disjoint_rejected_rate"] = float(np.mean(state[~is_known] == -1))
    ci = labels >= 0
    if ci.sum() >= 2:
        out["clustering"] = evaluate_clustering(truth[ci], labels[ci])
    return out
