"""A small reviewed-ready run built straight in the database from real glint-sample faces (no worker):
one cluster per person (true labels) plus one planted outlier per cluster (a face of another person, with
the highest p-), a labeled dataset of other glint people for ``assign``; and, for the browser and the
benchmark, the glint PNGs written under MEDIA_ROOT as the faces' crops, thumbnails and source images."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import reference_features
from tests.app.run_fixtures import featured_dataset


def write_media(dataset, set_name: str = "glint") -> None:
    """Give the dataset's faces real files: the glint crop as image, crop and thumbnail (box = all)."""
    from django.conf import settings

    from facecurate.datasets.models import Face, Image

    feats = reference_features(set_name)
    root = Path(settings.MEDIA_ROOT)
    by_source = {}
    for p in feats.paths:
        p = Path(str(p))
        by_source[f"{p.parent.name}/{p.name}"] = p
    faces, images = [], []
    for face in Face.objects.filter(dataset=dataset).select_related("image"):
        src = by_source[face.image.source_name]
        rel = f"fixture-media/{dataset.pk}/{face.image_id}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
        face.crop = face.thumbnail = rel
        face.box = [0, 0, 112, 112]
        face.image.file = rel
        face.image.width = face.image.height = 112
        faces.append(face)
        images.append(face.image)
    Face.objects.bulk_update(faces, ["crop", "thumbnail", "box"])
    Image.objects.bulk_update(images, ["file", "width", "height"])


def small_run(people: int = 4, per: int = 12, *, media: bool = False, user=None, name: str = "glint-review"):
    """(run, clusters in person order, {cluster id: planted outlier run-face id}, labeled dataset)."""
    from facecurate.jobs.models import Job
    from facecurate.recognition.services.versions import active_version
    from facecurate.runs.models import Cluster, PipelineRun, RunFace
    from facecurate.runs.services.review import refresh_stats

    feats = reference_features("glint")
    names = sorted(set(feats.labels.tolist()))
    chosen, labeled_names = names[:people], names[people:people + 5]
    rows = np.concatenate([np.flatnonzero(feats.labels == n)[:per] for n in chosen])
    unlabeled = featured_dataset(name, "glint", rows, labeled=False)
    labeled_rows = np.concatenate([np.flatnonzero(feats.labels == n)[:3] for n in labeled_names])
    labeled = featured_dataset(name + "-known", "glint", labeled_rows, labeled=True)
    if media:
        write_media(unlabeled)
        write_media(labeled)
    job = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, dataset=unlabeled, state=Job.State.SUCCEEDED)
    run = PipelineRun.objects.create(job=job, unlabeled_dataset=unlabeled, recognizer=active_version(),
                                     created_by=user, counts={"faces": len(rows)})
    run.labeled_datasets.set([labeled])
    from facecurate.datasets.models import Face

    faces = list(Face.objects.filter(dataset=unlabeled).select_related("image").order_by("id"))
    person = [f.image.source_name.split("/")[0] for f in faces]
    clusters = [Cluster.objects.create(run=run, number=i) for i in range(people)]
    rng = np.random.default_rng(0)
    outliers = {}
    rfs = []
    for k, (face, who) in enumerate(zip(faces, person)):
        c = chosen.index(who)
        last = (k % per) == per - 1
        target = clusters[(c + 1) % people] if last else clusters[c]  # the last face of each person is planted
        p = float(0.9 - 0.05 * c) if last else float(rng.uniform(0.001, 0.2))
        rfs.append(RunFace(run=run, face=face, cluster=target, original_cluster=target, p_minus=p,
                           margin=1 - p, overlap_state=0))
    rfs = RunFace.objects.bulk_create(rfs)
    for k, rf in enumerate(rfs):
        if (k % per) == per - 1:
            outliers[rf.cluster_id] = rf.pk
    for c in clusters:
        refresh_stats(c)
        c.save()
    return run, clusters, outliers, labeled


def assert_consistent(run) -> None:
    """Every cluster's size, mean/max p- and priority agree with the faces it holds; excluded faces are in
    no cluster; no face was deleted."""
    from django.db.models import Avg, Count, Max, Sum

    from facecurate.runs.models import Cluster, RunFace
    from facecurate.runs.services.priority import members_priority

    for c in Cluster.objects.filter(run=run):
        agg = RunFace.objects.filter(cluster=c).aggregate(n=Count("id"), m=Avg("p_minus"), x=Max("p_minus"),
                                                          s=Sum("p_minus"))
        assert c.size == agg["n"], (c.pk, c.size, agg)
        if agg["n"]:
            # (the store stage sums float32 p-, review sums in the database: equal to float32 precision)
            assert c.mean_p_minus == pytest.approx(agg["m"], rel=1e-5, abs=1e-12), c.pk
            assert c.max_p_minus == pytest.approx(agg["x"], rel=1e-5, abs=1e-12), c.pk
            want = members_priority(run, RunFace.objects.filter(cluster=c).values_list("p_minus", flat=True))
            assert c.priority == pytest.approx(want, rel=1e-5, abs=1e-12), c.pk
    assert not RunFace.objects.filter(run=run).exclude(excluded="").exclude(cluster=None).exists()
    assert RunFace.objects.filter(run=run).count() == run.counts["faces"]
