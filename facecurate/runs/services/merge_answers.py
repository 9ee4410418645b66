"""Answers to the merge queue's items: a pair, a merge group, a rejected face with its likely clusters.
Each is one decision of a person, carried out by the review services (:mod:`.review`)."""
from __future__ import annotations

from django.db import transaction

from ..models import Cluster
from . import review


@transaction.atomic
def answer_pair(user, cluster_id: int, version: int, other_id: int, other_version: int, same: bool):
    """"Same person?" on two clusters: yes merges the smaller into the larger (into the confirmed one
    when one of them is confirmed); no is recorded so the queue stops asking."""
    if not same:
        return review.distinct(user, cluster_id, other_cluster_id=other_id)
    c, o = Cluster.objects.get(pk=cluster_id), Cluster.objects.get(pk=other_id)
    keep_other = (o.review_state == Cluster.Review.CONFIRMED) > (c.review_state == Cluster.Review.CONFIRMED) or \
        ((o.review_state == Cluster.Review.CONFIRMED) == (c.review_state == Cluster.Review.CONFIRMED) and o.size > c.size)
    if keep_other:
        return review.merge(user, other_id, other_version, cluster_id, version)
    return review.merge(user, cluster_id, version, other_id, other_version)


@transaction.atomic
def answer_group(user, cluster_id: int, version: int, others: list[dict], same: list[int]):
    """One decision on a merge group: the clusters in ``same`` (ids among ``others`` = [{id, version}]) and this
    one become one cluster (:func:`_merge_into_keeper`), every other one is recorded as not this person. Returns
    the outcomes."""
    ids = {int(o["id"]) for o in others}
    if not ids or not set(map(int, same)) <= ids:
        raise review.ReviewError("name the group's clusters (others) and the same ones among them", "no_target", 400)
    review.hold(user, cluster_id, version, ids)
    outs = [review.distinct(user, cluster_id, other_cluster_id=o["id"]) for o in others if int(o["id"]) not in same]
    keep = [o for o in others if int(o["id"]) in same]
    return outs + (_merge_into_keeper(user, int(cluster_id), keep) if keep else [])


def _merge_into_keeper(user, cluster_id: int, keep: list[dict]):
    """The cluster and those of ``keep`` (ids and versions) become one: the others merge into the one a person
    named or confirmed, else the largest, else this one. A lone face shown with its person's cluster joins it;
    the person's cluster does not join the face and lose its name and its confirm."""
    clusters = Cluster.objects.in_bulk([cluster_id, *(int(o["id"]) for o in keep)])

    def rank(pk: int) -> tuple:
        c = clusters[pk]
        return bool(c.name or c.assigned_identity_id), c.review_state == Cluster.Review.CONFIRMED, c.size, pk == cluster_id

    keeper = max(clusters, key=rank)
    if keeper == cluster_id:
        return accept_merges(user, cluster_id, clusters[cluster_id].version, keep)
    version = next(o for o in keep if int(o["id"]) == keeper).get("version")
    rest = [{"id": cluster_id, "version": clusters[cluster_id].version}] + [o for o in keep if int(o["id"]) != keeper]
    return accept_merges(user, keeper, version, rest)


@transaction.atomic
def answer_face_group(user, runface_id: int, others: list[dict], chosen: int | None):
    """One decision on a rejected face shown with its likely clusters (``others`` = [{id, version}]):
    it joins ``chosen`` (one of them), or, with none, each is recorded as not its person."""
    ids = {int(o["id"]) for o in others}
    if not ids or (chosen is not None and int(chosen) not in ids):
        raise review.ReviewError("name the face's clusters (others) and the chosen one among them", "no_target", 400)
    if chosen is not None:
        o = next(o for o in others if int(o["id"]) == int(chosen))
        return [review.place(user, o["id"], o["version"], [runface_id])]
    return [review.distinct(user, o["id"], runface_id=runface_id) for o in others]


@transaction.atomic
def answer_face(user, cluster_id: int, version: int, runface_id: int, same: bool):
    """Is this rejected face the person of this cluster? Yes places it there; no is recorded."""
    if not same:
        return review.distinct(user, cluster_id, runface_id=runface_id)
    return review.place(user, cluster_id, version, [runface_id])


@transaction.atomic
def accept_merges(user, cluster_id: int, version: int, others: list[dict]):
    """Accept several merge suggestions for one cluster at once: each other cluster ({id, version})
    merges into it, in order, all or nothing. Returns the outcomes."""
    if not others:
        raise review.ReviewError("name at least one cluster to merge (others)", "no_target", 400)
    outs = []
    for o in others:
        out = review.merge(user, cluster_id, version, o.get("id"), o.get("version"))
        version = next(c.version for c in out.clusters if c.pk == int(cluster_id))
        outs.append(out)
    return outs
