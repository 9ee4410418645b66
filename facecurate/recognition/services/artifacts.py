"""Artifact files: written under a temp name and renamed (pipeline.features.atomic_path), hashed, and
recorded with their kind, size, sha256, format version and the job that made them.

A stage that is redone overwrites its artifact at the same path (same inputs, same content) and the
row is updated in place, so no file is orphaned and none silently goes stale.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings

from facecurate.datasets.services.storage import path_under
from pipeline.features import atomic_path

from ..models import Artifact

FORMAT_VERSION = 1


def artifact_path(rel: str) -> Path:
    return path_under(settings.ARTIFACT_ROOT, rel, "artifact root")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record(rel: str, kind: str, job=None) -> Artifact:
    path = artifact_path(rel)
    art, _ = Artifact.objects.update_or_create(
        path=rel, defaults={"kind": kind, "size_bytes": path.stat().st_size, "sha256": _sha256(path),
                            "format_version": FORMAT_VERSION, "job": job},
    )
    return art


def write_npz(rel: str, kind: str, job=None, **arrays: np.ndarray) -> Artifact:
    """Save ``arrays`` (plus a format version) atomically to ``rel`` and record the artifact."""
    path = artifact_path(rel)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, format_version=np.int64(FORMAT_VERSION), **arrays)
    return record(rel, kind, job)


def read_npz(artifact: Artifact | str, *, verify: bool = False) -> dict[str, np.ndarray]:
    """The arrays of an npz artifact; ``verify`` checks its sha256 against the record first."""
    rel = artifact.path if isinstance(artifact, Artifact) else artifact
    path = artifact_path(rel)
    if verify and isinstance(artifact, Artifact) and _sha256(path) != artifact.sha256:
        raise ValueError(f"artifact {rel} does not match its recorded sha256 (changed on disk)")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    version = int(arrays.pop("format_version", 0))
    if version != FORMAT_VERSION:
        raise ValueError(f"artifact {rel} has format version {version}, this code reads {FORMAT_VERSION}")
    return arrays


@lru_cache(maxsize=16)
def _read_cached(rel: str, sha256: str) -> dict[str, np.ndarray]:
    arrays = read_npz(rel)
    for a in arrays.values():
        a.setflags(write=False)  # shared between callers
    return arrays


def read_npz_cached(artifact: Artifact) -> dict[str, np.ndarray]:
    """``read_npz`` for readers that come back again and again (review requests, a run's stages), kept per
    process by the recorded sha256: an artifact rewritten and re-recorded is read anew. Arrays are read-only."""
    return _read_cached(artifact.path, artifact.sha256)


def write_npy(rel: str, kind: str, array: np.ndarray, job=None) -> Artifact:
    """Save one array as a plain ``.npy`` (memory-mappable, unlike an npz) atomically and record it."""
    path = artifact_path(rel)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    return record(rel, kind, job)


@lru_cache(maxsize=64)
def _mapped(rel: str, sha256: str) -> np.ndarray:
    return np.load(artifact_path(rel), mmap_mode="r", allow_pickle=False)


def open_npy(artifact: Artifact) -> np.ndarray:
    """A ``.npy`` artifact memory-mapped read-only, kept per process by its recorded sha256: the page cache,
    not each worker process, holds it, and a request reads only the rows it touches."""
    return _mapped(artifact.path, artifact.sha256)
