"""Datasets built straight from the cached SFace features of the shared sets (no detection needed),
through facecurate.datasets.services.from_features: a pipeline run skips straight past its embed stage."""
from __future__ import annotations

import numpy as np

from tests.conftest import reference_features


def featured_dataset(name: str, set_name: str, rows: np.ndarray, *, labeled: bool):
    from facecurate.datasets.services.from_features import dataset_from_features

    feats = reference_features(set_name)
    rows = np.asarray(rows)
    return dataset_from_features(name, feats.paths[rows], feats.embeddings[rows], labels=feats.labels[rows],
                                 labeled=labeled)


def rows_of(set_name: str, names) -> np.ndarray:
    feats = reference_features(set_name)
    return np.flatnonzero(np.isin(feats.labels, list(names)))


def lfw_names_with(min_images: int) -> list[str]:
    feats = reference_features("lfw")
    names, counts = np.unique(feats.labels, return_counts=True)
    return names[counts >= min_images].tolist()


def glint_people() -> list[str]:
    return sorted(set(reference_features("glint").labels.tolist()))


def lfw_name(glint_name: str) -> str:
    return glint_name.replace(" ", "_")
