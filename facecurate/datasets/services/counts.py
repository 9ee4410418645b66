"""Per-dataset counts for the list and detail endpoints: one indexed read of ``DatasetCounts`` (kept by
database triggers, :mod:`facecurate.datasets.triggers`), whatever the number of images and faces.

``count_rows`` counts the rows themselves (three ``GROUP BY dataset`` queries): the ground truth the
maintained counts are checked against, and the answer for a dataset without a counts row.
"""
from __future__ import annotations

from django.db.models import Count

from ..models import DatasetCounts, Face, Identity, Image


def _empty() -> dict:
    return {"images": {s: 0 for s in Image.Status.values}, "faces": 0, "identities": 0}


def count_rows(ids: list[int]) -> dict[int, dict]:
    out = {pk: _empty() for pk in ids}
    if not ids:
        return out
    rows = Image.objects.filter(dataset_id__in=ids).values("dataset_id", "status").order_by().annotate(n=Count("id"))
    for row in rows:
        out[row["dataset_id"]]["images"][row["status"]] = row["n"]
    for model, key in ((Face, "faces"), (Identity, "identities")):
        for row in model.objects.filter(dataset_id__in=ids).values("dataset_id").order_by().annotate(n=Count("id")):
            out[row["dataset_id"]][key] = row["n"]
    for counts in out.values():
        counts["images"]["total"] = sum(counts["images"].values())
    return out


def dataset_counts(ids: list[int]) -> dict[int, dict]:
    out = {}
    for row in DatasetCounts.objects.filter(dataset_id__in=ids):
        images = {s: getattr(row, f"images_{s}") for s in Image.Status.values}
        out[row.dataset_id] = {"images": {**images, "total": sum(images.values())}, "faces": row.faces,
                               "identities": row.identities}
    missing = [pk for pk in ids if pk not in out]
    if missing:
        out.update(count_rows(missing))
    return out


def attach_counts(datasets) -> list:
    datasets = list(datasets)
    counts = dataset_counts([d.pk for d in datasets])
    for d in datasets:
        d._counts = counts[d.pk]
    return datasets
