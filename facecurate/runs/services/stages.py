"""The stages of a pipeline run after embedding: overlap, cluster, uncertainty, store.

Each stage reads the artifacts of the stages before it, writes its own artifact atomically and
returns; the orchestrator (:mod:`.orchestrate`) records it done. Only ``store`` writes rows, all in one
transaction (replacing whatever an interrupted attempt of the same run wrote), so a worker killed in
any stage leaves nothing half visible and the redelivered run computes the same results again.
"""
from __future__ import annotations

import logging
from pathlib import PurePosixPath

import numpy as np

from facecurate.datasets.models import Face, Identity
from facecurate.recognition.models import Artifact
from facecurate.recognition.services import artifacts
from facecurate.recognition.services.embeddings import load_embeddings

from ..models import PipelineRun, RunFace
from . import scoring
from .member_index import write_member_index

log = logging.getLogger(__name__)


def art_rel(run: PipelineRun, name: str) -> str:
    return f"runs/run-{run.pk}/{name}.npz"


def unlabeled_face_ids(run: PipelineRun) -> np.ndarray:
    return np.asarray(Face.objects.filter(dataset_id=run.unlabeled_dataset_id).order_by("id")
                      .values_list("id", flat=True), dtype=np.int64)


def labeled_faces(run: PipelineRun) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(face ids, identity ids, embeddings) of every labeled face of the run's labeled datasets."""
    ids, idents, embs = [], [], []
    for ds in run.labeled_datasets.order_by("id"):
        rows = list(Face.objects.filter(dataset=ds, identity__isnull=False).order_by("id")
                    .values_list("id", "identity_id"))
        if not rows:
            continue
        f_ids = np.array([r[0] for r in rows], np.int64)
        _, e = load_embeddings(ds.pk, run.recognizer, f_ids)
        ids.append(f_ids)
        idents.append(np.array([r[1] for r in rows], np.int64))
        embs.append(e)
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 128), np.float32)
    return np.concatenate(ids), np.concatenate(idents), np.concatenate(embs)


def overlap_stage(ctx, run: PipelineRun) -> None:
    face_ids = unlabeled_face_ids(run)
    _, emb = load_embeddings(run.unlabeled_dataset_id, run.recognizer, face_ids)
    lab_ids, lab_ident, lab_emb = labeled_faces(run)
    n = len(face_ids)
    if len(lab_ids) == 0:
        state = np.zeros(n, np.int8)
        report = {"kind": "overlap", "degenerate": "no_labeled", "n": n,
                  "message": "no labeled faces in this run: every face is disjoint",
                  "counts": {"overlap": 0, "disjoint": n, "rejected": 0}}
        arrays = dict(state=state, max_logit=np.full(n, np.nan, np.float32), predicted=np.full(n, -1, np.int64),
                      posterior=np.full(n, np.nan, np.float32))
    else:
        cm = scoring.class_means(lab_emb, lab_ident)
        scores, arg = scoring.max_logits(cm, emb)
        genuine, impostor = scoring.reference_scores(cm, lab_emb, lab_ident)
        thr = scoring.equal_error_threshold(genuine, impostor)
        result, note = scoring.separate(scores.astype(np.float64), arg, thr, run_overlap_config(run))
        report = dict(result.report)
        report["reference"] = {
            "threshold": thr, "genuine": len(genuine), "impostor": len(impostor),
            "genuine_hist": _hist(genuine), "impostor_hist": _hist(impostor),
            "note": note or "one-mode decisions use the labeled faces' out-of-fold max-logits",
        }
        arrays = dict(state=result.state.astype(np.int8), max_logit=scores.astype(np.float32),
                      predicted=cm.identity_ids[arg], posterior=result.posterior)
        artifacts.write_npz(art_rel(run, "class_means"), Artifact.Kind.CLASS_MEANS, run.job,
                            identity_ids=cm.identity_ids, means=cm.means)
    artifacts.write_npz(art_rel(run, "overlap"), Artifact.Kind.OVERLAP, run.job, face_ids=face_ids, **arrays)
    run.overlap_report = report
    run.save(update_fields=["overlap_report"])


def _hist(x: np.ndarray, bins: int = 40) -> dict | None:
    if len(x) == 0:
        return None
    counts, edges = np.histogram(x, bins=bins)
    return {"counts": counts.tolist(), "edges": edges.tolist()}


def run_overlap_config(run: PipelineRun):
    from pipeline.overlap.separation import OverlapConfig

    conf = run.options.get("overlap_confidence")
    return OverlapConfig(confidence=float(conf)) if conf else OverlapConfig()


class Decisions:
    """Each face's newest human decision over the earlier runs of a dataset (see :func:`decisions`)."""

    def __init__(self, groups: dict[int, list[int]], not_a_face: set[int]) -> None:
        self.groups, self.not_a_face = groups, not_a_face

    @property
    def held(self) -> set[int]:
        """Faces the new run does not cluster: kept in their confirmed group, or not a face."""
        return {f for faces in self.groups.values() for f in faces} | self.not_a_face


def decisions(run: PipelineRun) -> Decisions:
    """The newest decision on each face over the earlier runs of the same dataset.

    A run's row says something about a face when a person acted on it: it was excluded (rejected or
    not a face), it is in a confirmed cluster, or it was moved out of the cluster the run put it in.
    A face's newest such row wins (later runs, and later decisions within a run, replace earlier ones):

    * in a confirmed cluster: carried with the faces whose newest decision is the same cluster;
    * not a face: stays out of clustering and is marked not a face again;
    * rejected, or moved into a cluster nobody confirmed (or out of any): clustered again like any face.
    """
    from django.db.models import F, Q

    moved = (Q(cluster__isnull=False, original_cluster__isnull=True)
             | Q(cluster__isnull=True, original_cluster__isnull=False)
             | Q(cluster__isnull=False, original_cluster__isnull=False) & ~Q(cluster=F("original_cluster")))
    decided = Q(cluster__review_state="confirmed") | ~Q(excluded="") | moved
    rows = (RunFace.objects.filter(decided, run__unlabeled_dataset_id=run.unlabeled_dataset_id,
                                   run_id__lt=run.pk).order_by("run_id").values_list("face_id", "cluster_id", "cluster__review_state", "excluded"))
    latest: dict[int, tuple] = {}
    for face_id, cluster_id, state, excluded in rows:
        latest[face_id] = (cluster_id, state, excluded)
    groups: dict[int, list[int]] = {}
    not_a_face: set[int] = set()
    for face_id, (cluster_id, state, excluded) in latest.items():
        if excluded == RunFace.Excluded.NOT_A_FACE:
            not_a_face.add(face_id)
        elif not excluded and cluster_id is not None and state == "confirmed":
            groups.setdefault(cluster_id, []).append(face_id)
    return Decisions(groups, not_a_face)


def locked_clusters(run: PipelineRun) -> dict[int, list[int]]:
    """Confirmed clusters of earlier runs on the same dataset, as {earlier cluster id: face ids}: the faces
    whose newest decision (:func:`decisions`) is that cluster."""
    return decisions(run).groups


def cluster_stage(ctx, run: PipelineRun) -> None:
    from pipeline.clustering.methods import cluster

    ov = artifacts.read_npz(art_rel(run, "overlap"))
    face_ids, state = ov["face_ids"], ov["state"]
    made = decisions(run)
    locked = made.groups
    free = (state == 0) & ~np.isin(face_ids, list(made.held))
    _, emb = load_embeddings(run.unlabeled_dataset_id, run.recognizer, face_ids)
    labels = np.full(len(face_ids), -1, np.int64)
    if free.sum() >= 2:
        labels[free] = cluster(emb[free], run.method, **run.params)
    elif free.sum() == 1:
        labels[free] = 0
    carried = np.full(len(face_ids), -1, np.int64)
    nxt = labels.max() + 1
    pos = {f: i for i, f in enumerate(face_ids.tolist())}
    for earlier, faces in sorted(locked.items()):
        rows = [pos[f] for f in faces if f in pos]
        labels[rows], carried[rows] = nxt, earlier
        nxt += 1
    not_a_face = np.isin(face_ids, list(made.not_a_face))
    artifacts.write_npz(art_rel(run, "clusters"), Artifact.Kind.CLUSTERS, run.job, face_ids=face_ids,
                        labels=labels, carried_from=carried, not_a_face=not_a_face)
    k = labels.max() + 1
    cent = np.zeros((max(k, 0), emb.shape[1]), np.float32)
    if k > 0:
        np.add.at(cent, labels[labels >= 0], emb[labels >= 0])
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    artifacts.write_npz(art_rel(run, "centroids"), Artifact.Kind.CENTROIDS, run.job, centroids=cent)
    write_member_index(run, face_ids, emb)  # review reads current members' embeddings from it


def uncertainty_stage(ctx, run: PipelineRun) -> None:
    from pipeline.uncertainty import clustering_uncertainty

    cl = artifacts.read_npz(art_rel(run, "clusters"))
    face_ids, labels, carried = cl["face_ids"], cl["labels"], cl["carried_from"]
    n = len(face_ids)
    p = np.full(n, np.nan, np.float32)
    paper = np.full(n, np.nan, np.float32)
    margin = np.full(n, np.nan, np.float32)
    report: dict = {"kind": "uncertainty", "degenerate": "no_clusters", "message": "nothing was clustered"}
    if (labels >= 0).any():
        _, emb = load_embeddings(run.unlabeled_dataset_id, run.recognizer, face_ids)
        res = clustering_uncertainty(emb, labels)
        p, report = res.p_minus.astype(np.float32), res.report
        paper = res.p_minus_paper.astype(np.float32)  # the paper's Otsu + Weibull p-, kept for comparison
        margin = res.assigned_margin.astype(np.float32)
    p[carried >= 0] = 0.0  # confirmed by a person: not in doubt
    artifacts.write_npz(art_rel(run, "uncertainty"), Artifact.Kind.UNCERTAINTY, run.job, face_ids=face_ids,
                        p_minus=p, p_minus_paper=paper, margin=margin)
    run.uncertainty_report = _jsonable(report)
    run.save(update_fields=["uncertainty_report"])


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def truth_names(face_ids: np.ndarray) -> np.ndarray:
    """Ground truth where the source files were in one folder per person: the parent folder's name, for
    the image's primary face only. Other faces of the photo (people in the background) have no known
    name: they get "" and are left out of every ground-truth measure."""
    rows = {f: (src, primary) for f, src, primary in
            Face.objects.filter(id__in=face_ids.tolist()).values_list("id", "image__source_name", "is_primary")}
    out = []
    for f in face_ids.tolist():
        src, primary = rows[f]
        parts = PurePosixPath(src.split(":", 1)[-1].replace("\\", "/")).parts
        out.append(norm_name(parts[-2]) if primary and len(parts) >= 2 else "")
    return np.array(out)


def norm_name(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).casefold()


def identity_names(identity_ids) -> dict[int, str]:
    return dict(Identity.objects.filter(id__in=list(identity_ids)).values_list("id", "name"))
