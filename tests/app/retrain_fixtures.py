"""Real-face datasets with real crops on disk (so retraining can read them) and a finished pipeline run
built from the real pipeline functions (infomap clusters and p- on cached SFace features).

* labeled: LFW identities (detected and aligned from ../shared/data here), PNGs written
  under MEDIA_ROOT like ingestion writes them;
* unlabeled: glint-sample people that are not in the labeled set (their files are aligned 112x112 crops,
  copied as the faces' crops), source names ``<Person>/<file>`` so the folders give ground truth.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from tests.conftest import reference_features, shared_path

LFW_PEOPLE = ["Alvaro_Uribe", "Andre_Agassi", "Ari_Fleischer", "Bill_Gates", "Guillermo_Coria",
              "Jennifer_Capriati", "John_Ashcroft", "Kofi_Annan"]
GLINT_PEOPLE = ["Hugh Laurie", "James Spader", "Miley Cyrus", "Simon Cowell", "Tina Fey"]


def lfw_crops(names, per_person: int):
    """(relative paths, aligned BGR crops) of the first ``per_person`` LFW images of each person, detected
    and aligned here (a second for these few) as the product's detector does."""
    from pipeline.recognition.faces import detect_and_align, read_image

    root = shared_path("lfw", "images_deepfunneled")
    paths, crops = [], []
    for name in names:
        for img in sorted((root / name).glob("*.jpg"))[:per_person]:
            crop = detect_and_align(read_image(img)).crop
            assert crop is not None, f"no face found in {img}"
            paths.append(f"{name}/{img.name}")
            crops.append(crop)
    return paths, np.stack(crops)


def _write_png(rel: str, bgr: np.ndarray) -> None:
    from facecurate.datasets.services.storage import media_path

    path = media_path(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.ascontiguousarray(bgr[:, :, ::-1])).save(path)


def crop_dataset(name: str, sources: list[str], crops: list, *, labeled: bool):
    """Dataset, Identity, Image and Face rows; ``crops[i]`` is a BGR array or a PNG path to copy."""
    from facecurate.datasets.models import Dataset, Face, Identity, Image
    from facecurate.datasets.services.storage import media_path

    ds = Dataset.objects.create(name=name, kind="labeled" if labeled else "unlabeled", aligned=True)
    idents = {}
    faces = []
    for i, (src, crop) in enumerate(zip(sources, crops)):
        person = src.split("/")[0]
        if labeled and person not in idents:
            idents[person] = Identity.objects.create(dataset=ds, name=person.replace("_", " "))
        rel = f"crops/{name}/{i}.png"
        if isinstance(crop, (str, Path)):
            media_path(rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(crop, media_path(rel))
        else:
            _write_png(rel, crop)
        im = Image.objects.create(dataset=ds, identity=idents.get(person), source_name=src, file=rel,
                                  sha256=f"{name}-{i}", size_bytes=1, status="ok", num_faces=1)
        faces.append(Face.objects.create(image=im, dataset=ds, identity=im.identity, index=0, is_primary=True,
                                         crop=rel))
    return ds, faces


def labeled_lfw(per_person: int = 6):
    paths, crops = lfw_crops(LFW_PEOPLE, per_person)
    return crop_dataset("lfw-labeled", paths, list(crops), labeled=True)


def unlabeled_glint(per_person: int = 12):
    root = shared_path("glint-sample")
    feats = reference_features("glint")
    rows = [i for n in GLINT_PEOPLE for i in np.flatnonzero(feats.labels == n)[:per_person]]
    files = [Path(str(feats.paths[i])) for i in rows]
    sources = [f"{f.parent.name}/{f.name}" for f in files]
    ds, faces = crop_dataset("glint-unlabeled", sources, [root / s for s in sources], labeled=False)
    return ds, faces, np.asarray(rows)


_GLINT_RUN: dict = {}


def glint_clusters_and_p_minus():
    """Infomap labels and p- of the whole glint-sample (cached SFace features), as a run over it gives.
    (p- of a small clean subset alone is degenerate: one mode of margins, all NaN.)"""
    from pipeline.clustering.methods import cluster
    from pipeline.uncertainty import clustering_uncertainty

    if not _GLINT_RUN:
        emb = reference_features("glint").embeddings
        labels = cluster(emb, "infomap")
        _GLINT_RUN.update(labels=labels, p=clustering_uncertainty(emb, labels).p_minus)
    return _GLINT_RUN["labels"], _GLINT_RUN["p"]


def finished_run(unlabeled, faces, rows, labeled, *, user=None):
    """A stored run as the pipeline leaves it: infomap clusters and p- of the real features (computed over
    the whole glint-sample, kept for the faces of ``rows``)."""
    from facecurate.jobs.models import Job
    from facecurate.recognition.services.versions import active_version
    from facecurate.runs.models import Cluster, PipelineRun, RunFace
    all_labels, all_p = glint_clusters_and_p_minus()
    labels, p = all_labels[rows], all_p[rows]
    job = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, dataset=unlabeled, state=Job.State.SUCCEEDED)
    run = PipelineRun.objects.create(job=job, unlabeled_dataset=unlabeled, recognizer=active_version(),
                                     options={"truth_from_folders": True}, stages={"store": {"state": "done"}},
                                     created_by=user)
    run.labeled_datasets.set([labeled])
    clusters = {c: Cluster.objects.create(run=run, number=int(c), size=int((labels == c).sum()))
                for c in np.unique(labels[labels >= 0]).tolist()}
    for f, c, pm in zip(faces, labels.tolist(), p.tolist()):
        cl = clusters.get(c)
        RunFace.objects.create(run=run, face=f, cluster=cl, original_cluster=cl, overlap_state=0,
                               p_minus=None if pm != pm else pm)
    return run, labels, p
