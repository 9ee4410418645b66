"""Datasets built straight from the cached SFace features of the shared sets (no detection needed):
Image and Face rows with the sets' folder names as source names, and their embeddings as the active
recognizer version's artifact, so a pipeline run skips straight past its embed stage."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import reference_features


def featured_dataset(name: str, set_name: str, rows: np.ndarray, *, labeled: bool):
    from facecurate.datasets.models import Dataset, Face, Identity, Image
    from facecurate.recognition.services.embeddings import save_embeddings
    from facecurate.recognition.services.versions import active_version

    feats = reference_features(set_name)
    rows = np.asarray(rows)
    ds = Dataset.objects.create(name=name, kind="labeled" if labeled else "unlabeled", aligned=True)
    idents = {}
    if labeled:
        for label in sorted(set(feats.labels[rows].tolist())):
            idents[label] = Identity.objects.create(dataset=ds, name=label)
    images = []
    for i in rows.tolist():
        p = Path(str(feats.paths[i]))
        images.append(Image(dataset=ds, identity=idents.get(str(feats.labels[i])), source_name=f"{p.parent.name}/{p.name}",
                            file=f"fixture/{set_name}/{i}", sha256=f"{set_name}-{i}", size_bytes=1, status="ok",
                            num_faces=1))
    images = Image.objects.bulk_create(images)
    faces = Face.objects.bulk_create([Face(image=im, dataset=ds, identity=im.identity, index=0, is_primary=True,
                                           crop=f"fixture/{im.pk}.png") for im in images])
    save_embeddings(ds.pk, active_version(), [f.pk for f in faces], feats.embeddings[rows], name="fixture")
    return ds


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
