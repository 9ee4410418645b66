"""The ``store`` stage: the run's artifacts become rows (clusters, per-face results) in one transaction,
plus counts and, where the faces carry ground truth, the overlap and clustering metrics."""
from __future__ import annotations

import numpy as np
from django.db import transaction

from facecurate.recognition.services import artifacts

from ..models import Cluster, PipelineRun, RunFace
from .priority import review_priority
from .stages import art_rel, identity_names, norm_name, truth_names

BATCH = 2000


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


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
        emb = None
        if cfg.get("merge_weight"):
            from facecurate.recognition.services.embeddings import load_embeddings

            emb = load_embeddings(run.unlabeled_dataset_id, run.recognizer, face_ids)[1]
        prio = review_priority(labels, p, emb, cfg)
    with transaction.atomic():
        RunFace.objects.filter(run=run).delete()
        Cluster.objects.filter(run=run).delete()
        clusters = _make_clusters(run, labels, p, carried, prio, k)
        rows = []
        for i, face_id in enumerate(face_ids.tolist()):
            c = clusters[labels[i]] if labels[i] >= 0 else None
            pred = int(ov["predicted"][i])
            rows.append(RunFace(
                run=run, face_id=face_id, max_logit=_f(ov["max_logit"][i]),
                predicted_identity_id=pred if pred >= 0 else None,
                predicted_score=_f(ov["max_logit"][i]) if pred >= 0 else None,
                overlap_state=int(ov["state"][i]), cluster=c, original_cluster=c,
                p_minus=_f(p[i]), margin=_f(un["margin"][i]),
                excluded=RunFace.Excluded.NOT_A_FACE if not_a_face[i] else "",
            ))
        RunFace.objects.bulk_create(rows, batch_size=BATCH)
    run.counts = _counts(ov["state"], labels, not_a_face)
    run.metrics = _metrics(run, face_ids, ov, labels) if run.options.get("truth_from_folders") else {}
    run.save(update_fields=["counts", "metrics"])


def _make_clusters(run, labels, p, carried, prio, k) -> list[Cluster]:
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    # A carried cluster keeps the name and the labeled identity people gave it.
    kept = {c["id"]: c for c in Cluster.objects.filter(pk__in=np.unique(carried[carried >= 0]).tolist())
            .values("id", "name", "assigned_identity_id")}
    objs = []
    for c in range(k):
        members = labels == c
        pc = p[members]
        pc = pc[np.isfinite(pc)]
        origin = carried[members]
        carried_id = int(origin[0]) if origin.size and origin[0] >= 0 else None
        objs.append(Cluster(
            run=run, number=c, size=int(sizes[c]), priority=float(prio[c]),
            mean_p_minus=float(pc.mean()) if pc.size else None, max_p_minus=float(pc.max()) if pc.size else None,
            review_state=Cluster.Review.CONFIRMED if carried_id else Cluster.Review.PENDING,
            carried_from_id=carried_id,
            name=kept.get(carried_id, {}).get("name", ""),
            assigned_identity_id=kept.get(carried_id, {}).get("assigned_identity_id"),
        ))
    return Cluster.objects.bulk_create(objs, batch_size=BATCH)


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
