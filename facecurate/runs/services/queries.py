"""Read side of runs: the review queue with keyset pagination, a cluster's faces, suggestions."""
from __future__ import annotations

import base64
import json

import numpy as np
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber

from facecurate.datasets.models import Face, Identity
from facecurate.recognition.services import artifacts

from ..models import Cluster, PipelineRun, RunFace
from .member_index import member_embeddings
from .stages import art_rel

ORDERINGS = {"priority": ("priority", "-priority"), "size": ("size", "-size")}
STATES = {"pending": [Cluster.Review.PENDING], "reviewed": [Cluster.Review.CONFIRMED, Cluster.Review.DISMISSED],
          "confirmed": [Cluster.Review.CONFIRMED], "dismissed": [Cluster.Review.DISMISSED], "all": None}


class BadQuery(ValueError):
    pass


def encode_cursor(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def decode_cursor(cursor: str) -> list:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not (isinstance(values, list) and len(values) == 2 and isinstance(values[1], int)):
            raise ValueError
        float(values[0])
        return values
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise BadQuery("cursor is not one this API gave out") from None


def cluster_page(run: PipelineRun, *, state: str = "pending", min_size: int | None = None,
                 max_size: int | None = None, ordering: str = "priority", cursor: str | None = None,
                 limit: int = 50) -> tuple[list[Cluster], str | None]:
    """One page of the run's clusters, most doubtful first (or largest first), after ``cursor``."""
    if state not in STATES:
        raise BadQuery(f"state must be one of {', '.join(STATES)}")
    if ordering not in ORDERINGS:
        raise BadQuery(f"ordering must be one of {', '.join(ORDERINGS)}")
    field, order = ORDERINGS[ordering]
    qs = Cluster.objects.filter(run=run)
    if STATES[state] is not None:
        qs = qs.filter(review_state__in=STATES[state])
    if min_size is not None:
        qs = qs.filter(size__gte=min_size)
    if max_size is not None:
        qs = qs.filter(size__lte=max_size)
    if cursor:
        value, last_id = decode_cursor(cursor)
        qs = qs.filter(Q(**{f"{field}__lt": value}) | Q(**{field: value, "id__gt": last_id}))
    qs = qs.select_related("assigned_identity", "lease_user", "changed_by", "reviewed_by")
    page = list(qs.order_by(order, "id")[:limit + 1])
    more = len(page) > limit
    page = page[:limit]
    nxt = encode_cursor([getattr(page[-1], field), page[-1].pk]) if more and page else None
    return page, nxt


def cluster_faces(cluster: Cluster):
    """The cluster's faces, most doubtful first (highest p-), then by id."""
    return (RunFace.objects.filter(cluster=cluster).select_related("face__image", "predicted_identity")
            .order_by("-p_minus", "id"))


def run_artifact(run: PipelineRun, name: str) -> dict | None:
    from facecurate.recognition.models import Artifact

    art = Artifact.objects.filter(path=art_rel(run, name)).first()
    return artifacts.read_npz_cached(art) if art else None


def current_centroid(cluster: Cluster) -> np.ndarray | None:
    ids = list(RunFace.objects.filter(cluster=cluster).values_list("face_id", flat=True))
    if not ids:
        return None
    c = member_embeddings(cluster.run, ids).sum(0, dtype=np.float64)
    return c / max(np.linalg.norm(c), 1e-12)


def _top(sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest, largest first: a partition (O(n)), then a sort of those ``k`` only."""
    if k >= len(sims):
        return np.argsort(-sims, kind="stable")
    part = np.argpartition(-sims, k - 1)[:k]
    return part[np.argsort(-sims[part], kind="stable")]


def _first_per_group(qs, group: str, value: str, order: tuple[str, ...], n: int = 3) -> dict[int, list]:
    """{group: the first ``n`` values in ``order``} for every group of ``qs``, in one query (a window)."""
    ranked = qs.annotate(_rank=Window(RowNumber(), partition_by=[F(group)], order_by=[F(o).asc() for o in order]))
    out: dict[int, list] = {}
    for g, v in ranked.filter(_rank__lte=n).order_by(group, "_rank").values_list(group, value):
        out.setdefault(g, []).append(v)
    return out


def suggestions(cluster: Cluster, k: int = 5) -> dict:
    """Nearest other clusters of the run (by centroid cosine) and labeled identities (by class score)."""
    run = cluster.run
    centre = current_centroid(cluster)
    out = {"merges": [], "identities": []}
    if centre is None:
        return out
    cents = run_artifact(run, "centroids")
    if cents is not None and len(cents["centroids"]):
        sims = cents["centroids"] @ centre.astype(np.float32)
        order = [int(i) for i in _top(sims, k + 1)]
        by_number = {c.number: c for c in Cluster.objects.filter(run=run, number__in=order)
                     .exclude(pk=cluster.pk).exclude(size=0)
                     .select_related("assigned_identity", "lease_user", "changed_by", "reviewed_by")}
        chosen = [i for i in order if i in by_number][:k]
        faces = _first_per_group(RunFace.objects.filter(cluster_id__in=[by_number[i].pk for i in chosen]),
                                 "cluster_id", "face_id", ("p_minus", "id"))
        for i in chosen:
            c = by_number[i]
            out["merges"].append({"cluster": c, "similarity": float(sims[i]), "faces": faces.get(c.pk, [])})
    means = run_artifact(run, "class_means")
    if means is not None and len(means["means"]):
        sims = means["means"] @ centre.astype(np.float32)
        top = _top(sims, k)
        ids = [int(means["identity_ids"][i]) for i in top]
        names = dict(Identity.objects.filter(id__in=ids).values_list("id", "name"))
        samples = _first_per_group(Face.objects.filter(identity_id__in=ids), "identity_id", "id", ("id",))
        for i, ident in zip(top, ids):
            out["identities"].append({"identity": ident, "name": names.get(ident, "?"), "score": float(sims[i]),
                                      "faces": samples.get(ident, [])})
    return out


def identity_search(run: PipelineRun, q: str = "", limit: int = 20) -> list[Identity]:
    """Identities of the run's labeled datasets whose name contains ``q`` (ignoring case): names that
    start with it first, then alphabetical. Never creates anything."""
    qs = Identity.objects.filter(dataset__in=run.labeled_datasets.all()).select_related("dataset")
    q = (q or "").strip()
    if q:
        qs = qs.filter(name__icontains=q)
    rows = list(qs.order_by("name", "id")[:max(limit * 5, 100)])
    low = q.casefold()
    rows.sort(key=lambda i: (not i.name.casefold().startswith(low), i.name.casefold(), i.pk))
    return rows[:limit]
