"""A simulated annotator: knows the ground truth and works a run's review queue exactly as a person
would, through the same review service functions the API calls, one action per decision (a confirm, a
yes/no on a pair, a reject, a merge, a placement, an assignment), recording the labeling quality
(pairwise F, BCubed F) after every action, and why it stopped (queue exhausted, action limit, target).

The shipped order, ``gain``, is the one review queue (:mod:`.merge_queue`): the person takes its head
item each time: a cluster with its likely partners (one decision: the ones that are the same person
merge into it, the rest are recorded as "no"; all "no" is one action too), a rejected face
with its likely clusters (one decision: it joins the one that is its person, or none is), or a cluster to clean
(take out the faces that are not its majority person as in step 1 below, then confirm or assign it as in
step 3); the queue is listed again after every decision.

The cluster orders (``priority``, ``paper``, ``size``, ``random``) walk the pending clusters; with
``passes`` > 1 a later pass walks again the clusters changed since they were confirmed. For each
cluster the person:

1. takes out the faces that are not the cluster's majority person: each other person with at least
   two faces there is split off into a new cluster (one action each: select them, split), so a
   person's faces the clusterer kept together stay together; the single ones are rejected (one action:
   select them, reject);
2. looks at the suggested merges (the nearest ``k`` clusters, as the UI shows them) and merges each
   whose majority person is the same (one action each);
3. takes out, as in step 1, any faces of other people that came in, then assigns the cluster to its
   labeled identity when that identity is among the suggestions (one action, which also confirms it),
   or else confirms it (one action; single strays are rejected in the same action, the cluster page's
   "reject selected, confirm the rest", R).

Quality is measured on the faces the run clustered (its disjoint faces): a face out of every cluster
counts as a singleton, and clusters assigned to the same labeled identity count as one.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from pipeline.clustering.metrics import bcubed_prf, pairwise_prf

from ..models import Cluster, PipelineRun, RunFace
from . import review
from .queries import suggestions
from .stages import identity_names, norm_name, truth_names

ORDERS = ("gain", "priority", "paper", "size", "random")
CLUSTER_ORDERS = ORDERS[1:]


@dataclass
class Trace:
    order: str
    actions: list[str] = field(default_factory=list)
    pairwise_f: list[float] = field(default_factory=list)
    bcubed_f: list[float] = field(default_factory=list)
    clusters_visited: int = 0
    stopped: str = ""
    passes: int = 0

    def actions_to(self, target: float) -> int | None:
        return next((i for i, f in enumerate(self.pairwise_f) if f >= target), None)

    def summary(self, targets=(0.99,)) -> dict:
        at = lambda k: self.pairwise_f[min(k, len(self.pairwise_f) - 1)]  # noqa: E731
        half = self.pairwise_f[0] + (1.0 - self.pairwise_f[0]) / 2
        return {"order": self.order, "actions": len(self.actions), "clusters_visited": self.clusters_visited,
                "stopped": self.stopped, "passes": self.passes,
                "start_pairwise_f": self.pairwise_f[0],
                **{f"actions_to_pairwise_f_{t}": self.actions_to(t) for t in targets},
                "actions_to_half_the_gap": self.actions_to(half),
                "pairwise_f_after_100": at(100), "pairwise_f_after_500": at(500), "final_pairwise_f": self.pairwise_f[-1],
                "final_bcubed_f": self.bcubed_f[-1], "action_counts": dict(Counter(self.actions))}


class Quality:
    """Pairwise and BCubed F of the run's current labeling of its clustered faces."""

    def __init__(self, run: PipelineRun) -> None:
        rows = list(RunFace.objects.filter(run=run, original_cluster__isnull=False, face__is_primary=True)
                    .order_by("id").values_list("id", "face_id", "original_cluster_id"))  # faces the truth names
        self.run, self.ids = run, np.array([r[0] for r in rows])
        self.computed = np.array([r[2] for r in rows], np.int64)
        self.truth = truth_names(np.array([r[1] for r in rows]))
        self.truth_by_rf = dict(zip(self.ids.tolist(), self.truth.tolist()))

    def __call__(self) -> tuple[float, float]:
        rows = dict(RunFace.objects.filter(id__in=self.ids.tolist()).values_list("id", "cluster_id"))
        assigned = dict(Cluster.objects.filter(run=self.run, assigned_identity__isnull=False)
                        .values_list("id", "assigned_identity_id"))
        pred = np.empty(len(self.ids), np.int64)
        for i, rf in enumerate(self.ids.tolist()):
            c = rows[rf]
            pred[i] = -1 if c is None else (10**12 + assigned[c] if c in assigned else c)
        _, _, pf = pairwise_prf(self.truth, pred)
        _, _, bf = bcubed_prf(self.truth, pred)
        return pf, bf


def queue_order(run: PipelineRun, order: str, seed: int = 0) -> list[int]:
    pending = Cluster.objects.filter(run=run, review_state=Cluster.Review.PENDING)
    if order == "priority":
        return list(pending.order_by("-priority", "id").values_list("id", flat=True))
    if order == "size":
        return list(pending.order_by("-size", "id").values_list("id", flat=True))
    if order == "random":
        ids = list(pending.order_by("id").values_list("id", flat=True))
        random.Random(seed).shuffle(ids)
        return ids
    if order == "paper":
        return _paper_order(run, pending)
    raise ValueError(f"cluster order must be one of {CLUSTER_ORDERS}")


def _paper_order(run: PipelineRun, pending) -> list[int]:
    """Clusters by the largest paper p- among their faces (the paper's p- with the product's rule)."""
    from facecurate.recognition.services import artifacts

    from .stages import art_rel

    un = artifacts.read_npz(art_rel(run, "uncertainty"))
    paper = dict(zip(un["face_ids"].tolist(), np.nan_to_num(un["p_minus_paper"], nan=0.0).tolist()))
    best: dict[int, float] = {}
    for cid, face_id in RunFace.objects.filter(cluster__in=pending).values_list("cluster_id", "face_id"):
        best[cid] = max(best.get(cid, 0.0), paper.get(face_id, 0.0))
    return sorted(best, key=lambda c: (-best[c], c))


class Annotator:
    def __init__(self, run: PipelineRun, user, quality: Quality, *, k: int = 5, max_actions: int = 1000,
                 on_action: Callable[[str], None] | None = None) -> None:
        self.run, self.user, self.quality, self.k, self.max_actions = run, user, quality, k, max_actions
        self.known = {norm_name(n): i for i, n in identity_names(
            run.labeled_datasets.values_list("identities__id", flat=True)).items()}
        self.on_action = on_action

    def majority(self, cluster_id: int) -> tuple[str | None, list[int]]:
        """(majority person, ids of the faces that are someone else)."""
        faces = list(RunFace.objects.filter(cluster_id=cluster_id).values_list("id", flat=True))
        truth = [self.quality.truth_by_rf.get(f, f"?{f}") for f in faces]
        if not truth:
            return None, []
        top = sorted(Counter(truth).items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        return top, [f for f, t in zip(faces, truth) if t != top]

    def act(self, trace: Trace, kind: str, fn, *args) -> bool:
        if len(trace.actions) >= self.max_actions:
            return False
        fn(self.user, *args)
        trace.actions.append(kind)
        pf, bf = self.quality()
        trace.pairwise_f.append(pf)
        trace.bcubed_f.append(bf)
        if self.on_action:
            self.on_action(kind)
        return True

    def take_out(self, trace: Trace, cid: int, outliers: list[int], confirm_rest: bool = False) -> bool:
        """The faces of other people out of cluster ``cid``: each other person with at least two faces
        here split off together (one action each), the single ones rejected (one action; with
        ``confirm_rest`` the same action confirms the faces left, as the cluster page's R does)."""
        by = self._by_person(outliers)
        singles = _singles(by)
        for person in sorted(by):
            if len(by[person]) > 1 and not self.act(trace, "split", review.split, cid, self.version(cid), by[person]):
                return False
        return not singles or self.act(trace, "reject_confirm" if confirm_rest else "reject", review.reject, cid,
                                       self.version(cid), singles, confirm_rest)

    def _by_person(self, faces: list[int]) -> dict[str, list[int]]:
        by: dict[str, list[int]] = {}
        for f in faces:
            by.setdefault(self.quality.truth_by_rf.get(f, f"?{f}"), []).append(f)
        return by

    def finish(self, trace: Trace, cid: int, person: str | None, identities=None) -> bool:
        """The last decision on a cluster: the faces of other people still in it taken out, then it is
        assigned to its labeled identity when that is among the suggestions (``identities``; looked up
        when None), else confirmed, in one action with the rejection of single strays."""
        _, outliers = self.majority(cid)
        ident = self.known.get(person or "")
        if ident is not None and identities is None:
            identities = suggestions(Cluster.objects.get(pk=cid), k=self.k)["identities"]
        if ident is not None and any(s["identity"] == ident for s in identities):
            if outliers and not self.take_out(trace, cid, outliers):
                return False
            return self.act(trace, "assign", review.assign, cid, self.version(cid), ident)
        if outliers and not self.take_out(trace, cid, outliers, confirm_rest=True):
            return False
        if _singles(self._by_person(outliers)):
            return True  # their reject confirmed the rest
        return self.act(trace, "confirm", review.confirm, cid, self.version(cid))

    def version(self, cluster_id: int) -> int:
        return Cluster.objects.get(pk=cluster_id).version

    def review_cluster(self, trace: Trace, cid: int, again: bool = False) -> bool:
        c = Cluster.objects.get(pk=cid)
        if c.size == 0 or (c.review_state != Cluster.Review.PENDING and not again):
            return True
        trace.clusters_visited += 1
        person, outliers = self.majority(cid)
        if outliers and not self.take_out(trace, cid, outliers):
            return False
        sugg = suggestions(Cluster.objects.get(pk=cid), k=self.k)
        for m in sugg["merges"]:
            other = m["cluster"]
            if other.review_state != Cluster.Review.DISMISSED and self.majority(other.pk)[0] == person:
                if not self.act(trace, "merge", review.merge, cid, self.version(cid), other.pk):
                    return False
        return self.finish(trace, cid, person, sugg["identities"])

    def start(self, order: str) -> Trace:
        trace = Trace(order)
        pf, bf = self.quality()
        trace.pairwise_f.append(pf)
        trace.bcubed_f.append(bf)
        return trace

    def work(self, order: str, seed: int = 0, passes: int = 1, target: float | None = None) -> Trace:
        trace = self.start(order)
        if order == "gain":
            self._work_queue(trace, target)
        else:
            self._work_clusters(trace, order, seed, passes, target)
        return trace

    def _done(self, trace: Trace, target) -> str | None:
        if len(trace.actions) >= self.max_actions:
            return "limit"
        if target is not None and trace.pairwise_f[-1] >= target:
            return "target"
        return None

    def _work_clusters(self, trace: Trace, order: str, seed: int, passes: int, target) -> None:
        confirmed_at: dict[int, int] = {}
        for k in range(passes):
            ids = queue_order(self.run, order, seed) if k == 0 else [
                c for c, v in Cluster.objects.filter(pk__in=list(confirmed_at)).values_list("id", "version")
                if v != confirmed_at[c] and Cluster.objects.filter(pk=c, size__gt=0).exists()]
            if not ids:
                trace.stopped = "queue_exhausted"
                return
            trace.passes = k + 1
            for cid in ids:
                if not self.review_cluster(trace, cid, again=k > 0) or self._done(trace, target):
                    trace.stopped = self._done(trace, target) or "limit"
                    return
                if Cluster.objects.filter(pk=cid, review_state=Cluster.Review.CONFIRMED).exists():
                    confirmed_at[cid] = self.version(cid)
        trace.stopped = "passes_done"

    def _work_queue(self, trace: Trace, target) -> None:
        from . import merge_queue

        trace.passes = 1
        while True:
            why = self._done(trace, target)
            if why:
                trace.stopped = why
                return
            items = merge_queue.review_items(self.run)
            if not items:
                trace.stopped = "queue_exhausted"
                return
            done = len(trace.actions)
            if not self.take(trace, items[0]):
                trace.stopped = "limit"
                return
            if len(trace.actions) == done:
                raise RuntimeError(f"queue item {items[0]} was taken without an action: the queue would not move")

    def take(self, trace: Trace, item) -> bool:
        """One queue item, as a person answers it (one action per decision)."""
        from . import merge_queue

        if item.kind == "merge" and item.others:
            person = self.majority(item.cluster)[0]
            others = [{"id": o["id"], "version": self.version(o["id"])} for o in item.others]
            same = [o["id"] for o in others if self.majority(o["id"])[0] == person]
            trace.clusters_visited += 1
            return self.act(trace, "merge" if same else "no", merge_queue.answer_group, item.cluster,
                            self.version(item.cluster), others, same)
        if item.kind == "merge":
            same = self.majority(item.cluster)[0] == self.majority(item.other)[0]
            trace.clusters_visited += 1
            return self.act(trace, "merge" if same else "no", merge_queue.answer_pair, item.cluster,
                            self.version(item.cluster), item.other, self.version(item.other), same)
        if item.kind == "place" and item.others:
            person = self.quality.truth_by_rf.get(item.face)
            others = [{"id": o["id"], "version": self.version(o["id"])} for o in item.others]
            chosen = next((o["id"] for o in others if self.majority(o["id"])[0] == person), None)
            return self.act(trace, "no" if chosen is None else "place", merge_queue.answer_face_group, item.face,
                            others, chosen)
        if item.kind == "place":
            same = self.quality.truth_by_rf.get(item.face) == self.majority(item.cluster)[0]
            return self.act(trace, "place" if same else "no", merge_queue.answer_face, item.cluster,
                            self.version(item.cluster), item.face, same)
        trace.clusters_visited += 1
        return self.finish(trace, item.cluster, self.majority(item.cluster)[0])


def _singles(by_person: dict[str, list[int]]) -> list[int]:
    """The faces that are the only one of their person."""
    return [f for group in by_person.values() if len(group) == 1 for f in group]


def oracle_curve(quality: Quality, max_actions: int, target: float | None = None, split: bool = True) -> list[float]:
    """The perfect greedy annotator's pairwise F on the run as computed (best merge or clean-up each step),
    with the simulated person's clean-up (``split``: other people's faces split off together) or the
    issue's (every stray a singleton)."""
    from pipeline.review.oracle import greedy_oracle

    return greedy_oracle(quality.truth, quality.computed, max_actions=max_actions, target=target, split=split)


def reset_review(run: PipelineRun) -> None:
    """Put the run back as it was computed (for comparing queue orders on the same run)."""
    from django.db import transaction

    with transaction.atomic():
        RunFace.objects.filter(run=run).update(excluded="")
        for cid in Cluster.objects.filter(run=run, number__isnull=False).values_list("id", flat=True):
            RunFace.objects.filter(run=run, original_cluster_id=cid).update(cluster_id=cid)
        RunFace.objects.filter(run=run, original_cluster__isnull=True).update(cluster=None)
        Cluster.objects.filter(run=run, number__isnull=True).delete()
        run.review_actions.all().delete()
        for c in Cluster.objects.filter(run=run):
            review.refresh_stats(c)
            c.review_state, c.assigned_identity, c.name = Cluster.Review.PENDING, None, ""
            c.reviewed_by = c.reviewed_at = c.lease_user = c.lease_until = None
            c.save()
