"""A run's member index: every face of the run with its embedding, sorted by face id, in one
memory-mapped ``.npy`` written once by the cluster stage.

Review pages need the embeddings of a cluster's *current* members (faces move between clusters in
review) and, with the run's centroid artifact, the nearest other clusters. Reading the dataset's
embedding files and concatenating them per request costs O(dataset) (about 0.5 GB at 1M faces); the
index costs O(cluster): a binary search per face id and one gathered row each, from pages the OS shares
between worker processes.
"""
from __future__ import annotations

import numpy as np

from facecurate.recognition.models import Artifact
from facecurate.recognition.services import artifacts

from ..models import PipelineRun


def index_rel(run: PipelineRun) -> str:
    return f"runs/run-{run.pk}/members.npy"


def member_dtype(dim: int) -> np.dtype:
    return np.dtype([("face_id", np.int64), ("emb", np.float32, (dim,))])


def write_member_index(run: PipelineRun, face_ids: np.ndarray, emb: np.ndarray) -> Artifact:
    face_ids = np.asarray(face_ids, np.int64)
    if emb.ndim != 2 or emb.shape[0] != face_ids.shape[0]:
        raise ValueError(f"member index: {emb.shape} embeddings for {face_ids.shape[0]} faces")
    order = np.argsort(face_ids, kind="stable")
    rows = np.empty(len(face_ids), member_dtype(emb.shape[1]))
    rows["face_id"] = face_ids[order]
    rows["emb"] = emb[order]
    return artifacts.write_npy(index_rel(run), Artifact.Kind.CENTROIDS, rows, run.job)


def member_embeddings(run: PipelineRun, face_ids) -> np.ndarray:
    """(n, d) embeddings of the run's faces ``face_ids``, in that order. Runs stored before the index
    existed fall back to the dataset's embedding files."""
    want = np.asarray(face_ids, np.int64)
    art = Artifact.objects.filter(path=index_rel(run)).first()
    if art is None:
        from facecurate.recognition.services.embeddings import load_embeddings

        return load_embeddings(run.unlabeled_dataset_id, run.recognizer, want)[1]
    rows = artifacts.open_npy(art)
    ids = rows["face_id"]
    pos = np.searchsorted(ids, want)
    ok = (pos < len(ids)) & (ids[np.minimum(pos, max(len(ids) - 1, 0))] == want) if len(ids) else \
        np.zeros(len(want), bool)
    if not ok.all():
        raise ValueError(f"{int((~ok).sum())} faces are not in run {run.pk} (first: face {int(want[~ok][0])})")
    return np.asarray(rows["emb"][pos], np.float32)
