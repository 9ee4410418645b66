"""Thumbnail strips for the review queue: the few most doubtful faces of each cluster on a page, in one
query (a row number per cluster, ordered like the cluster page: highest p- first)."""
from __future__ import annotations

from django.db.models import F, Window
from django.db.models.functions import RowNumber

from ..models import RunFace


def queue_strips(cluster_ids, per_cluster: int = 6) -> dict[int, list[str]]:
    """{cluster id: [thumbnail path, ...]} (at most ``per_cluster`` each, most doubtful first)."""
    ids = [int(c) for c in cluster_ids]
    if not ids:
        return {}
    rows = (RunFace.objects.filter(cluster_id__in=ids)
            .annotate(rank=Window(RowNumber(), partition_by=[F("cluster_id")],
                                  order_by=[F("p_minus").desc(nulls_last=True), F("id").asc()]))
            .filter(rank__lte=per_cluster)
            .order_by("cluster_id", "rank")
            .values_list("cluster_id", "face__thumbnail", "face__crop"))
    out: dict[int, list[str]] = {c: [] for c in ids}
    for cid, thumb, crop in rows:
        if thumb or crop:
            out[cid].append(thumb or crop)
    return out
