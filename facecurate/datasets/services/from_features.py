"""A dataset made from a feature file (``pipeline embed`` output or the cached reference features):
Image and Face rows whose source names keep each file's last two path parts (so a folder per person
stays readable as ground truth), and the embeddings saved for a recognizer version, so a pipeline run
goes straight past its embed stage. For benchmarks and tests at a scale where detection would
dominate; the rows carry no image files."""
from __future__ import annotations

from pathlib import PurePath

import numpy as np
from django.db import transaction

from ..models import Dataset, Face, Identity, Image


@transaction.atomic
def dataset_from_features(name: str, paths, embeddings: np.ndarray, *, labels=None, labeled: bool = False,
                          version=None) -> Dataset:
    from facecurate.recognition.services.embeddings import save_embeddings
    from facecurate.recognition.services.versions import active_version

    paths = [str(p) for p in paths]
    emb = np.asarray(embeddings, np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(paths):
        raise ValueError(f"embeddings must be ({len(paths)}, d), got {emb.shape}")
    if labeled and labels is None:
        raise ValueError("a labeled dataset needs labels")
    ds = Dataset.objects.create(name=name, kind="labeled" if labeled else "unlabeled", aligned=True)
    idents = {}
    if labeled:
        idents = {n: Identity.objects.create(dataset=ds, name=n) for n in sorted(set(map(str, labels)))}
    images = Image.objects.bulk_create([
        Image(dataset=ds, identity=idents.get(str(labels[i])) if labeled else None,
              source_name="/".join(PurePath(p).parts[-2:]), file=f"features/{ds.pk}/{i}", sha256=f"features-{ds.pk}-{i}",
              size_bytes=0, status="ok", num_faces=1) for i, p in enumerate(paths)], batch_size=5000)
    faces = Face.objects.bulk_create([Face(image=im, dataset=ds, identity=im.identity, index=0, is_primary=True,
                                           crop="") for im in images], batch_size=5000)
    save_embeddings(ds.pk, version or active_version(), [f.pk for f in faces], emb, name="from-features")
    return ds
