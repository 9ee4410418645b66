"""Per-dataset counts in a fixed number of grouped queries, whatever the number of faces.

The list endpoints count the datasets of one page with three ``GROUP BY dataset`` queries (images
per status, faces, identities) over indexed columns, instead of a correlated subquery per row.
"""
from __future__ import annotations

from django.db.models import Count

from ..models import Face, Identity, Image


def dataset_counts(ids: list[int]) -> dict[int, dict]:
    out = {pk: {"images": {s: 0 for s in Image.Status.values}, "faces": 0, "identities": 0} for pk in ids}
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


def attach_counts(datasets) -> list:
    datasets = list(datasets)
    counts = dataset_counts([d.pk for d in datasets])
    for d in datasets:
        d._counts = counts[d.pk]
    return datasets
