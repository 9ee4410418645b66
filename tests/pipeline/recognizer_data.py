"""Real-face data for the recognizer tests: SFace features of att_faces (built if the cache is
missing) and of LFW (from the cache only; building it takes minutes)."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from pipeline.features import FeatureSet, load_features, save_features
from tests.conftest import ROOT, shared_path

CACHE = Path(os.environ.get("FACECURATE_CACHE", ROOT / ".cache")) / "features"


@lru_cache(maxsize=1)
def _att() -> FeatureSet:
    path = CACHE / "att_sface.npz"
    if not path.is_file():
        from pipeline.embedders import OnnxEmbedder
        from pipeline.extract import extract_features, list_images

        paths, labels = list_images(shared_path("att_faces"), labeled=True)
        res = extract_features(paths, OnnxEmbedder(), labels=labels)
        save_features(path, res.features)
    return load_features(path)


def att_features() -> FeatureSet:
    shared_path("att_faces")
    return _att()


@lru_cache(maxsize=1)
def _lfw() -> FeatureSet:
    return load_features(CACHE / "lfw_sface.npz")


def lfw_features() -> FeatureSet:
    shared_path("lfw", "pairs.txt")
    if not (CACHE / "lfw_sface.npz").is_file():
        pytest.skip(f"no LFW SFace feature cache at {CACHE} (run bench/extract_reference_features.py lfw)")
    return _lfw()


def att_crops(n_ids: int = 6, per_id: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Small set of att_faces images resized to 112x112 BGR crops, with labels (fast, no detection)."""
    import cv2

    from pipeline.faces import read_image

    root = shared_path("att_faces")
    crops, labels = [], []
    for s in range(1, n_ids + 1):
        for k in range(1, per_id + 1):
            crops.append(cv2.resize(read_image(root / f"s{s}" / f"{k}.pgm"), (112, 112)))
            labels.append(f"s{s}")
    return np.stack(crops), np.asarray(labels)
