"""Images on disk to a feature file: detect, align, embed.

A folder of identity folders (``<root>/<name>/<image>``) gives a labeled feature set;
a flat folder gives an unlabeled one. Images with no face are reported, not dropped
silently: they are listed in the result's ``failed``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from pipeline.features import FeatureSet
from pipeline.progress import Progress
from pipeline.recognition.embedders import Embedder
from pipeline.recognition.faces import FaceDetector, detect_and_align, read_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}



def list_images(root: str | Path, *, labeled: bool | None = None) -> tuple[list[Path], list[str] | None]:
    """Image paths under ``root``, sorted; with labels (the parent folder's name) for labeled sets.

    ``labeled=None`` decides by layout: a root whose images all sit one level down is labeled.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if labeled is None:
        labeled = bool(paths) and all(p.parent.parent == root for p in paths)
    labels = [p.parent.name for p in paths] if labeled else None
    return paths, labels


@dataclass
class ExtractResult:
    features: FeatureSet | None
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def iter_crops(
    paths: Sequence[str | Path],
    *,
    aligned: bool = False,
    detector: FaceDetector | None = None,
) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    """For each image, ``(index, crop, None)`` or ``(index, None, reason)`` when it gives no face.

    ``crop`` is the aligned 112x112 BGR uint8 primary face; ``aligned=True`` takes images as
    ready crops (resized to 112x112 if needed) without detection.
    """
    import cv2

    if not aligned:
        detector = detector or FaceDetector()
    for i, path in enumerate(paths):
        try:
            img = read_image(path)
            if aligned:
                crop = img if img.shape[:2] == (112, 112) else cv2.resize(img, (112, 112))
            else:
                crop = detect_and_align(img, detector).crop
                if crop is None:
                    raise ValueError("no face found")
        except ValueError as exc:
            yield i, None, str(exc)
        else:
            yield i, crop, None


def extract_features(
    paths: Sequence[str | Path],
    embedder: Embedder,
    *,
    labels: Sequence[str] | None = None,
    detector: FaceDetector | None = None,
    aligned: bool = False,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> ExtractResult:
    """Embed each image's primary face. ``aligned=True`` takes images as ready 112x112 crops."""
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} paths")
    kept: list[int] = []
    failed: list[tuple[str, str]] = []
    chunks: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for i, crop, error in iter_crops(paths, aligned=aligned, detector=detector):
        if crop is None:
            failed.append((str(paths[i]), error))
        else:
            kept.append(i)
            batch.append(crop)
            if len(batch) == batch_size:
                chunks.append(embedder.embed(np.stack(batch)))
                batch = []
        if progress is not None:
            progress(i + 1, len(paths))
    if batch:
        chunks.append(embedder.embed(np.stack(batch)))
    if not kept:
        return ExtractResult(features=None, failed=failed)
    keep = np.asarray(kept)
    feats = FeatureSet(
        embeddings=np.concatenate(chunks),
        paths=np.asarray([str(p) for p in paths])[keep],
        labels=None if labels is None else np.asarray(labels)[keep],
    )
    return ExtractResult(features=feats, failed=failed)
