"""Real-face data for the recognizer tests: SFace features of att_faces (built if the cache is
missing) and of LFW (from the cache only; building it takes minutes)."""
from __future__ import annotations

import numpy as np

from pipeline.features import FeatureSet
from tests.conftest import reference_features, shared_path


def att_features() -> FeatureSet:
    shared_path("att_faces")
    return reference_features("att")


def lfw_features() -> FeatureSet:
    shared_path("lfw", "pairs.txt")
    return reference_features("lfw")


def att_crops(n_ids: int = 6, per_id: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Small set of att_faces images resized to 112x112 BGR crops, with labels (fast, no detection)."""
    import cv2

    from pipeline.recognition.faces import read_image

    root = shared_path("att_faces")
    crops, labels = [], []
    for s in range(1, n_ids + 1):
        for k in range(1, per_id + 1):
            crops.append(cv2.resize(read_image(root / f"s{s}" / f"{k}.pgm"), (112, 112)))
            labels.append(f"s{s}")
    return np.stack(crops), np.asarray(labels)
