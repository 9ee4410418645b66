"""Embeddings per (dataset, recognizer version): artifact files of (face ids, float32 matrix).

``missing_faces`` lists the faces with no embedding yet for a version; ``embed_faces`` computes
them from the stored crops; ``save_embeddings`` writes one file (atomically) and records it;
``load_embeddings`` gathers a dataset's rows, in the order asked for.
"""
from __future__ import annotations

import numpy as np
from django.db import transaction
from PIL import Image as PILImage

from facecurate.datasets.models import Face
from facecurate.datasets.services.storage import media_path
from pipeline.features import check_embeddings

from ..models import Artifact, EmbeddingFile, RecognizerVersion
from . import artifacts
from .versions import embedder_for


def embedded_ids(dataset_id: int, version: RecognizerVersion) -> np.ndarray:
    files = EmbeddingFile.objects.filter(dataset_id=dataset_id, recognizer=version).select_related("artifact")
    parts = [artifacts.read_npz_cached(f.artifact)["face_ids"] for f in files]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def missing_faces(dataset_id: int, version: RecognizerVersion) -> list[int]:
    have = set(embedded_ids(dataset_id, version).tolist())
    return [pk for pk in Face.objects.filter(dataset_id=dataset_id).order_by("id").values_list("id", flat=True)
            if pk not in have]


def load_crops(face_ids: list[int]) -> np.ndarray:
    """(N, 112, 112, 3) uint8 BGR crops of the faces, in the order given."""
    paths = dict(Face.objects.filter(id__in=face_ids).values_list("id", "crop"))
    crops = np.empty((len(face_ids), 112, 112, 3), np.uint8)
    for i, pk in enumerate(face_ids):
        with PILImage.open(media_path(paths[pk])) as img:
            crops[i] = np.asarray(img.convert("RGB"))[:, :, ::-1]
    return crops


def embed_faces(face_ids: list[int], version: RecognizerVersion, *, batch: int = 64, progress=None) -> np.ndarray:
    embedder = embedder_for(version)
    out = []
    for start in range(0, len(face_ids), batch):
        out.append(embedder.embed(load_crops(face_ids[start:start + batch])))
        if progress is not None:
            progress(min(start + batch, len(face_ids)), len(face_ids))
    if not out:
        return np.zeros((0, getattr(embedder, "dim", 128)), np.float32)
    return check_embeddings(np.concatenate(out))


def save_embeddings(dataset_id: int, version: RecognizerVersion, face_ids: list[int], emb: np.ndarray, *,
                    name: str, job=None) -> EmbeddingFile:
    ids = np.asarray(face_ids, dtype=np.int64)
    emb = check_embeddings(emb)
    if emb.shape[0] != ids.shape[0]:
        raise ValueError(f"{emb.shape[0]} embeddings for {ids.shape[0]} face ids")
    rel = f"embeddings/dataset-{dataset_id}/version-{version.pk}/{name}.npz"
    with transaction.atomic():
        art = artifacts.write_npz(rel, Artifact.Kind.EMBEDDINGS, job, face_ids=ids, embeddings=emb)
        ef, _ = EmbeddingFile.objects.update_or_create(
            artifact=art, defaults={"dataset_id": dataset_id, "recognizer": version, "count": len(ids),
                                    "dim": emb.shape[1]})
    return ef


def load_embeddings(dataset_id: int, version: RecognizerVersion, face_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """(face ids, (N, d) embeddings) of a dataset; with ``face_ids``, exactly those rows in that order
    (a ValueError names any face that has no embedding)."""
    files = EmbeddingFile.objects.filter(dataset_id=dataset_id, recognizer=version).select_related("artifact")
    ids, embs = [], []
    for f in files.order_by("id"):
        arrays = artifacts.read_npz_cached(f.artifact)
        ids.append(arrays["face_ids"])
        embs.append(arrays["embeddings"])
    all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    all_emb = np.concatenate(embs) if embs else np.zeros((0, 128), np.float32)
    all_ids, first = np.unique(all_ids, return_index=True)
    all_emb = all_emb[first]
    if face_ids is None:
        return all_ids, all_emb
    want = np.asarray(face_ids, dtype=np.int64)
    pos = np.searchsorted(all_ids, want)
    ok = (pos < len(all_ids)) & (all_ids[np.minimum(pos, len(all_ids) - 1)] == want) if len(all_ids) else \
        np.zeros(len(want), bool)
    if not ok.all():
        raise ValueError(f"{int((~ok).sum())} faces have no embedding (first: face {int(want[~ok][0])})")
    return want, all_emb[pos]
