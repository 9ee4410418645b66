"""The feature file form every stage reads and writes.

A feature file is an ``.npz`` with

- ``embeddings``: (N, d) float32, each row L2-normalised;
- ``paths``: (N,) str, where each row came from;
- ``labels`` (optional): (N,) str identity names, for labeled data.

Stages may add arrays of their own (``logits``, ``max_logit``, ...); those are
kept when a file is read and written back.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

NORM_TOLERANCE = 1e-3


class FeatureFileError(ValueError):
    """A feature file or array set that does not have the documented form."""


def check_embeddings(
    embeddings: np.ndarray, *, name: str = "embeddings", unit_norm: bool = True
) -> np.ndarray:
    """Return ``embeddings`` as C-contiguous float32 after checking shape, finiteness and (with
    ``unit_norm``) that every row is L2-normalised."""
    arr = np.asarray(embeddings)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise FeatureFileError(f"{name} must be a non-empty (N, d) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise FeatureFileError(f"{name} must be floating point, got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise FeatureFileError(f"{name} contains NaN or infinite values")
    if not unit_norm:
        return arr
    norms = np.linalg.norm(arr, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if bad.size:
        raise FeatureFileError(
            f"{name} rows must be L2-normalised; row {bad[0]} has norm {norms[bad[0]]:.4f} "
            f"({bad.size} rows off)"
        )
    return arr


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


@dataclass
class FeatureSet:
    embeddings: np.ndarray
    paths: np.ndarray
    labels: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.embeddings = check_embeddings(self.embeddings)
        n = self.embeddings.shape[0]
        self.paths = np.asarray(self.paths).astype(str)
        if self.paths.shape != (n,):
            raise FeatureFileError(f"paths must have shape ({n},), got {self.paths.shape}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels).astype(str)
            if self.labels.shape != (n,):
                raise FeatureFileError(f"labels must have shape ({n},), got {self.labels.shape}")
        for key, value in self.extra.items():
            value = np.asarray(value)
            if value.shape[:1] != (n,):
                raise FeatureFileError(f"array {key!r} must have {n} rows, got shape {value.shape}")

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def subset(self, index: np.ndarray) -> "FeatureSet":
        index = np.asarray(index)
        return FeatureSet(
            embeddings=self.embeddings[index],
            paths=self.paths[index],
            labels=None if self.labels is None else self.labels[index],
            extra={k: v[index] for k, v in self.extra.items()},
        )

    def label_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """Integer ids (N,) int64 for ``labels`` and the sorted class names they index."""
        if self.labels is None:
            raise FeatureFileError("this feature set has no labels")
        names, ids = np.unique(self.labels, return_inverse=True)
        return ids.astype(np.int64), names


RESERVED = {"embeddings", "paths", "labels"}


def load_features(path: str | os.PathLike) -> FeatureSet:
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"no feature file at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise FeatureFileError(f"{path} is not a readable .npz file: {exc}") from exc
    for key in ("embeddings", "paths"):
        if key not in arrays:
            raise FeatureFileError(f"{path} has no {key!r} array (has {sorted(arrays)})")
    return FeatureSet(
        embeddings=arrays.pop("embeddings"),
        paths=arrays.pop("paths"),
        labels=arrays.pop("labels", None),
        extra=arrays,
    )


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it into place, on error remove it.

    Readers never see a half-written artifact, and a killed writer leaves only a ``.<name>.*.tmp``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write an ``.npz`` next to ``path`` under a temporary name, then rename it into place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return Path(path)


def save_features(path: str | os.PathLike, features: FeatureSet) -> Path:
    arrays: dict[str, np.ndarray] = {
        "embeddings": features.embeddings,
        "paths": features.paths.astype(str),
    }
    if features.labels is not None:
        arrays["labels"] = features.labels.astype(str)
    for key, value in features.extra.items():
        if key in RESERVED:
            raise FeatureFileError(f"extra array may not be named {key!r}")
        arrays[key] = value
    return atomic_save_npz(path, **arrays)


def save_labels(path: str | os.PathLike, labels: np.ndarray, **extra: np.ndarray) -> Path:
    """Write predicted cluster labels: an int64 ``labels`` array aligned with the input rows."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise FeatureFileError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    return atomic_save_npz(path, labels=labels.astype(np.int64), **extra)


def load_labels(path: str | os.PathLike) -> np.ndarray:
    with np.load(Path(path), allow_pickle=False) as data:
        if "labels" not in data.files:
            raise FeatureFileError(f"{path} has no 'labels' array")
        labels = data["labels"]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise FeatureFileError(f"{path}: labels must be a 1-D integer array")
    return labels.astype(np.int64)
