"""Review decisions on a run's clusters: the domain operations behind the review API (and the simulated
annotator benchmark, which calls these same functions).

Every operation:

* takes the acting user, the cluster's id and the ``version`` the caller saw (optimistic lock), plus
  run-face ids or other cluster ids where it needs them;
* runs in one transaction, locking every cluster it touches with ``select_for_update`` in ascending id
  order (so two operations on overlapping clusters cannot deadlock);
* refuses (``ReviewError``, with an HTTP status, a stable ``code`` and a message; nothing changes) when
  an id is unknown or belongs elsewhere, when another user holds the cluster's lease, or when the
  cluster changed since ``version`` (the message names who changed it);
* keeps ``Cluster.size``, ``mean_p_minus``, ``max_p_minus``, ``priority`` and ``review_state`` consistent
  with the faces it holds, bumps ``version`` of every cluster it changes, and records a ``ReviewAction``
  whose payload holds each changed row before and after (enough to undo it).

Faces are never deleted: rejected faces leave their cluster (``cluster=None, excluded='rejected'``),
and so do faces marked not a face (``excluded='not_a_face'``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import Avg, Count, Max
from django.utils import timezone

from facecurate.datasets.models import Dataset, Identity
from facecurate.names import BadName, normalize_name

from ..models import Cluster, PipelineRun, ReviewAction, RunFace
from .priority import members_priority

LEASE_SECONDS = 120
MAX_FACES_PER_ACTION = 5000
_CLUSTER_FIELDS = ("size", "priority", "mean_p_minus", "max_p_minus", "review_state", "name",
                   "assigned_identity_id", "reviewed_by_id", "reviewed_at", "changed_by_id", "changed_at")


class ReviewError(Exception):
    """A refused review request: nothing was changed. ``status`` is the HTTP status, ``code`` stable."""

    def __init__(self, message: str, code: str, status: int = 400, results: list | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status, self.results = message, code, status, results

    def as_dict(self) -> dict:
        out = {"detail": self.message, "code": self.code}
        if self.results is not None:
            out["results"] = self.results
        return out


@dataclass
class Outcome:
    """What an operation did: its audit row, the clusters it changed (fresh from the database) and the
    result per requested face id."""

    action: ReviewAction | None
    clusters: list[Cluster] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    created_cluster: Cluster | None = None


# --- helpers ----------------------------------------------------------------------------------------


def _now():
    return timezone.now()


def _name(user) -> str:
    return getattr(user, "username", None) or "someone"


def _lock(ids) -> dict[int, Cluster]:
    """Lock the clusters ``ids`` (ascending id order: no deadlocks); 404 when one is unknown."""
    ids = sorted({int(i) for i in ids})
    found = {c.pk: c for c in Cluster.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ReviewError(f"no cluster {', '.join(map(str, missing))}", "unknown_cluster", 404)
    return found


def lease_holder(cluster: Cluster, user, now=None):
    """The other user holding an unexpired lease on ``cluster``, or None."""
    now = now or _now()
    if cluster.lease_user_id and cluster.lease_until and cluster.lease_until > now \
            and cluster.lease_user_id != getattr(user, "pk", None):
        return cluster.lease_user
    return None


def _check_lease(cluster: Cluster, user) -> None:
    holder = lease_holder(cluster, user)
    if holder is not None:
        until = timezone.localtime(cluster.lease_until).strftime("%H:%M:%S")
        raise ReviewError(f"{_name(holder)} is reviewing cluster {cluster.pk} (lease until {until}); "
                          "it is read-only for you until they leave it", "leased", 409)


def hold(user, cluster_id, version, others=()) -> dict[int, Cluster]:
    """Lock the clusters of one decision made of several actions; check ``cluster_id``'s lease and
    version first (409 when another annotator changed or holds it), so no part of the decision lands."""
    return _open(user, cluster_id, version, others)


def _check_version(cluster: Cluster, version) -> None:
    if version is None:
        raise ReviewError(f"send the version of cluster {cluster.pk} you are looking at", "version_required", 400)
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise ReviewError("version must be an integer", "bad_version", 400) from None
    if version != cluster.version:
        who = _name(cluster.changed_by) if cluster.changed_by_id else "someone"
        when = f" at {timezone.localtime(cluster.changed_at):%H:%M:%S}" if cluster.changed_at else " meanwhile"
        raise ReviewError(f"cluster {cluster.pk} was changed by {who}{when} (it is at version {cluster.version}, "
                          f"you sent {version}); reload it to see their change", "stale_version", 409)


def _open(user, cluster_id, version, others=()) -> dict[int, Cluster]:
    """Lock ``cluster_id`` and ``others``; check the lease and version of ``cluster_id``."""
    locked = _lock([cluster_id, *others])
    cluster = locked[int(cluster_id)]
    _check_lease(cluster, user)
    _check_version(cluster, version)
    return locked


def _snapshot(c: Cluster) -> dict:
    out = {}
    for f in _CLUSTER_FIELDS:
        v = getattr(c, f)
        out[f] = v.isoformat() if hasattr(v, "isoformat") else v
    return out


def _restore(c: Cluster, snap: dict) -> None:
    from django.utils.dateparse import parse_datetime

    for f in _CLUSTER_FIELDS:
        v = snap.get(f)
        if f in ("reviewed_at", "changed_at") and isinstance(v, str):
            v = parse_datetime(v)
        setattr(c, f, v)


def refresh_stats(c: Cluster) -> None:
    """Size, mean/max p- and priority (the run's rule, as the store stage computes it) from the members.
    (A merge term of the rule, if one is ever chosen, is left out here: it needs every centroid.)"""
    agg = RunFace.objects.filter(cluster=c).aggregate(n=Count("id"), mean=Avg("p_minus"), mx=Max("p_minus"))
    c.size = agg["n"]
    c.mean_p_minus, c.max_p_minus = agg["mean"], agg["mx"]
    c.priority = members_priority(c.run, RunFace.objects.filter(cluster=c).values_list("p_minus", flat=True))


def _faces(cluster: Cluster, runface_ids) -> list[RunFace]:
    """The run-faces ``runface_ids``, all members of ``cluster``; else 400 with a reason per id."""
    if not isinstance(runface_ids, (list, tuple)) or not runface_ids:
        raise ReviewError("select at least one face (faces: a list of run-face ids)", "no_faces", 400)
    try:
        ids = [int(i) for i in runface_ids]
    except (TypeError, ValueError):
        raise ReviewError("faces must be run-face ids (integers)", "bad_faces", 400) from None
    if len(ids) > MAX_FACES_PER_ACTION:
        raise ReviewError(f"at most {MAX_FACES_PER_ACTION} faces per action", "too_many_faces", 400)
    ids = list(dict.fromkeys(ids))
    rows = {rf.pk: rf for rf in RunFace.objects.filter(pk__in=ids)}
    results, bad = [], False
    for i in ids:
        rf = rows.get(i)
        if rf is None:
            results.append({"id": i, "ok": False, "code": "unknown_face", "detail": f"no run-face {i}"})
        elif rf.run_id != cluster.run_id:
            results.append({"id": i, "ok": False, "code": "other_run",
                            "detail": f"run-face {i} belongs to run {rf.run_id}, not {cluster.run_id}"})
        elif rf.cluster_id != cluster.pk:
            where = f"cluster {rf.cluster_id}" if rf.cluster_id else f"no cluster ({rf.excluded or 'unclustered'})"
            results.append({"id": i, "ok": False, "code": "not_in_cluster",
                            "detail": f"run-face {i} is in {where}, not in cluster {cluster.pk}"})
        else:
            results.append({"id": i, "ok": True})
            continue
        bad = True
    if bad:
        wrong = [r for r in results if not r["ok"]]
        raise ReviewError(f"{len(wrong)} of {len(ids)} faces cannot be changed here: {wrong[0]['detail']}",
                          wrong[0]["code"], 400, results)
    return [rows[i] for i in ids]


def _touch(c: Cluster, user, now) -> None:
    c.version += 1
    c.changed_by, c.changed_at = user, now


def _record(user, kind, cluster: Cluster, before: dict[int, dict], changed: list[Cluster], faces: list | None = None,
            created: list[int] = (), extra: dict | None = None) -> ReviewAction:
    payload = {
        "clusters": {str(c.pk): {"before": before.get(c.pk), "after": _snapshot(c), "version": c.version}
                     for c in changed},
        "faces": faces or [],
        "created": list(created),
        **(extra or {}),
    }
    return ReviewAction.objects.create(run_id=cluster.run_id, cluster=cluster, user=user, kind=kind, payload=payload)


def _save(clusters) -> None:
    for c in clusters:
        c.save()


def _move_faces(faces: list[RunFace], to: Cluster | None, excluded: str) -> list[list]:
    """Move ``faces`` to ``to`` (None: out of any cluster) with ``excluded``; returns the undo rows
    ``[runface id, cluster before, excluded before, cluster after, excluded after]``."""
    rows = [[rf.pk, rf.cluster_id, rf.excluded, to.pk if to else None, excluded] for rf in faces]
    RunFace.objects.filter(pk__in=[rf.pk for rf in faces]).update(cluster=to, excluded=excluded)
    return rows


def _fresh(ids) -> list[Cluster]:
    return list(Cluster.objects.filter(pk__in=list(ids))
                .select_related("assigned_identity", "lease_user", "changed_by", "reviewed_by").order_by("pk"))


def _done(action, changed, results=(), created=None) -> Outcome:
    return Outcome(action=action, clusters=_fresh([c.pk for c in changed]), results=list(results),
                   created_cluster=created)


# --- operations -------------------------------------------------------------------------------------


@transaction.atomic
def confirm(user, cluster_id: int, version: int, name: str | None = None) -> Outcome:
    """The cluster is one person (optionally named): review_state confirmed."""
    c = _open(user, cluster_id, version)[int(cluster_id)]
    if c.size == 0:
        raise ReviewError(f"cluster {c.pk} is empty", "empty_cluster", 400)
    before = {c.pk: _snapshot(c)}
    if name is not None:
        try:
            c.name = normalize_name(name, what="cluster name") if name.strip() else ""
        except BadName as exc:
            raise ReviewError(exc.message, exc.code, 400) from None
    now = _now()
    c.review_state, c.reviewed_by, c.reviewed_at = Cluster.Review.CONFIRMED, user, now
    _touch(c, user, now)
    c.save()
    return _done(_record(user, ReviewAction.Kind.CONFIRM, c, before, [c]), [c])


def _take_out(user, cluster_id, version, runface_ids, kind, excluded, confirm_rest: bool = False) -> Outcome:
    c = _open(user, cluster_id, version)[int(cluster_id)]
    faces = _faces(c, runface_ids)
    before = {c.pk: _snapshot(c)}
    rows = _move_faces(faces, None, excluded)
    now = _now()
    refresh_stats(c)
    if c.size == 0:
        c.review_state, c.reviewed_by, c.reviewed_at = Cluster.Review.DISMISSED, user, now
    elif confirm_rest:
        c.review_state, c.reviewed_by, c.reviewed_at = Cluster.Review.CONFIRMED, user, now
    _touch(c, user, now)
    c.save()
    action = _record(user, kind, c, before, [c], rows, extra={"confirmed": True} if confirm_rest and c.size else None)
    return _done(action, [c], [{"id": rf.pk, "ok": True} for rf in faces])


@transaction.atomic
def reject(user, cluster_id: int, version: int, runface_ids: list[int], confirm_rest: bool = False) -> Outcome:
    """These faces do not belong: they leave the cluster (cluster=None, excluded='rejected'). With
    ``confirm_rest`` the faces left are one person: the cluster is confirmed in the same action (one
    decision, one undo)."""
    return _take_out(user, cluster_id, version, runface_ids, ReviewAction.Kind.REJECT, RunFace.Excluded.REJECTED,
                     confirm_rest)


@transaction.atomic
def not_a_face(user, cluster_id: int, version: int, runface_ids: list[int] | None = None) -> Outcome:
    """These detections are not faces (excluded='not_a_face'); with no ids, the whole cluster (which is
    then dismissed)."""
    if not runface_ids:
        c = _open(user, cluster_id, version)[int(cluster_id)]
        runface_ids = list(RunFace.objects.filter(cluster=c).values_list("pk", flat=True))
        if not runface_ids:
            raise ReviewError(f"cluster {c.pk} is empty", "empty_cluster", 400)
    return _take_out(user, cluster_id, version, runface_ids, ReviewAction.Kind.NOT_A_FACE,
                     RunFace.Excluded.NOT_A_FACE)


def _target(user, c: Cluster, target: Cluster, target_version, what: str) -> None:
    if target.pk == c.pk:
        raise ReviewError(f"cannot {what} cluster {c.pk} with itself", "same_cluster", 400)
    if target.run_id != c.run_id:
        raise ReviewError(f"cluster {target.pk} belongs to run {target.run_id}, not run {c.run_id}", "other_run", 400)
    _check_lease(target, user)
    if target_version is not None:
        _check_version(target, target_version)


def _transfer(user, cluster_id, version, other_id, other_version, *, kind: str, what: str,
              into_other: bool, runface_ids=None) -> Outcome:
    """Faces from one of two clusters of the run to the other (one transaction, both locked): with
    ``into_other`` the faces ``runface_ids`` of ``cluster_id`` go to ``other_id`` (a move), else every
    face of ``other_id`` comes to ``cluster_id`` (a merge). A cluster left empty is dismissed; a
    dismissed one that receives faces is pending again."""
    locked = _open(user, cluster_id, version, [other_id])
    c, o = locked[int(cluster_id)], locked[int(other_id)]
    _target(user, c, o, other_version, what)
    src, dst = (c, o) if into_other else (o, c)
    faces = _faces(c, runface_ids) if into_other else list(RunFace.objects.filter(cluster=o))
    if not faces:
        raise ReviewError(f"cluster {o.pk} is empty; nothing to merge", "empty_cluster", 400)
    before = {c.pk: _snapshot(c), o.pk: _snapshot(o)}
    rows = _move_faces(faces, dst, "")
    now = _now()
    for x in (c, o):
        refresh_stats(x)
        _touch(x, user, now)
    if src.size == 0:
        src.review_state, src.reviewed_by, src.reviewed_at = Cluster.Review.DISMISSED, user, now
    if dst.review_state == Cluster.Review.DISMISSED and dst.size:
        dst.review_state = Cluster.Review.PENDING
    _save([c, o])
    action = _record(user, kind, c, before, [c, o], rows, extra={"target": o.pk})
    return _done(action, [c, o], [{"id": rf.pk, "ok": True} for rf in faces])


@transaction.atomic
def move(user, cluster_id: int, version: int, runface_ids: list[int], target_cluster_id: int,
         target_version: int | None = None) -> Outcome:
    """Move these faces to another cluster of the same run."""
    if target_cluster_id is None:
        raise ReviewError("name the cluster to move the faces to (target)", "no_target", 400)
    return _transfer(user, cluster_id, version, target_cluster_id, target_version, kind=ReviewAction.Kind.MOVE,
                     what="move faces from", into_other=True, runface_ids=runface_ids)


@transaction.atomic
def split(user, cluster_id: int, version: int, runface_ids: list[int], name: str | None = None) -> Outcome:
    """Split these faces off into a new cluster (number=None, pending review)."""
    c = _open(user, cluster_id, version)[int(cluster_id)]
    faces = _faces(c, runface_ids)
    if len(faces) == c.size:
        raise ReviewError("splitting off every face would only rename the cluster; select fewer", "split_all", 400)
    try:
        clean = normalize_name(name, what="cluster name") if name and name.strip() else ""
    except BadName as exc:
        raise ReviewError(exc.message, exc.code, 400) from None
    now = _now()
    new = Cluster.objects.create(run_id=c.run_id, number=None, name=clean, changed_by=user, changed_at=now)
    before = {c.pk: _snapshot(c), new.pk: None}
    rows = _move_faces(faces, new, "")
    for x in (c, new):
        refresh_stats(x)
    _touch(c, user, now)
    _save([c, new])
    action = _record(user, ReviewAction.Kind.SPLIT, c, before, [c, new], rows, created=[new.pk],
                     extra={"target": new.pk})
    return _done(action, [c, new], [{"id": rf.pk, "ok": True} for rf in faces], created=new)


@transaction.atomic
def merge(user, cluster_id: int, version: int, other_cluster_id: int, other_version: int | None = None) -> Outcome:
    """Merge ``other_cluster_id`` into this cluster: all its faces move here; it is left empty (dismissed)."""
    if other_cluster_id is None:
        raise ReviewError("name the cluster to merge (other)", "no_target", 400)
    return _transfer(user, cluster_id, version, other_cluster_id, other_version, kind=ReviewAction.Kind.MERGE,
                     what="merge", into_other=False)


@transaction.atomic
def place(user, cluster_id: int, version: int, runface_ids: list[int]) -> Outcome:
    """Rejected faces of the run (out of every cluster) belong in this cluster after all: they join it."""
    c = _open(user, cluster_id, version)[int(cluster_id)]
    ids = [int(i) for i in runface_ids or []]
    faces = list(RunFace.objects.filter(pk__in=ids, run_id=c.run_id, cluster__isnull=True,
                                        excluded=RunFace.Excluded.REJECTED))
    if not ids or len(faces) != len(set(ids)):
        raise ReviewError("only rejected faces of this run (out of every cluster) can be placed",
                          "not_rejected", 400)
    before = {c.pk: _snapshot(c)}
    rows = _move_faces(faces, c, "")
    now = _now()
    refresh_stats(c)
    _touch(c, user, now)
    if c.review_state == Cluster.Review.DISMISSED:
        c.review_state = Cluster.Review.PENDING
    c.save()
    action = _record(user, ReviewAction.Kind.MOVE, c, before, [c], rows, extra={"placed": True})
    return _done(action, [c], [{"id": rf.pk, "ok": True} for rf in faces])


@transaction.atomic
def distinct(user, cluster_id: int, other_cluster_id: int | None = None, runface_id: int | None = None) -> Outcome:
    """A "no" in the merge queue: ``other_cluster_id`` (or the rejected face ``runface_id``) is not the
    person of ``cluster_id``. Recorded (the queue stops asking); no cluster changes."""
    c = _lock([cluster_id])[int(cluster_id)]
    if (other_cluster_id is None) == (runface_id is None):
        raise ReviewError("name either the other cluster or the rejected face", "no_target", 400)
    extra = {"pair": sorted([c.pk, int(other_cluster_id)])} if other_cluster_id is not None else \
        {"face": int(runface_id)}
    if other_cluster_id is not None:
        o = _lock([other_cluster_id])[int(other_cluster_id)]
        if o.run_id != c.run_id or o.pk == c.pk:
            raise ReviewError(f"cluster {o.pk} is not another cluster of run {c.run_id}", "other_run", 400)
    action = ReviewAction.objects.create(run_id=c.run_id, cluster=c, user=user, kind=ReviewAction.Kind.DISTINCT,
                                         payload={"clusters": {}, "faces": [], "created": [], **extra})
    return _done(action, [c])


def _labeled_identity(run: PipelineRun, identity_id) -> Identity:
    try:
        ident = Identity.objects.select_related("dataset").get(pk=int(identity_id))
    except (TypeError, ValueError, Identity.DoesNotExist):
        raise ReviewError(f"no identity {identity_id}", "unknown_identity", 400) from None
    if not run.labeled_datasets.filter(pk=ident.dataset_id).exists():
        raise ReviewError(f"identity {ident.pk} ({ident.name}) is in dataset {ident.dataset.name!r}, which is not "
                          "one of this run's labeled datasets", "other_dataset", 400)
    return ident


@transaction.atomic
def assign(user, cluster_id: int, version: int, identity_id: int) -> Outcome:
    """The cluster is a known identity of the run's labeled datasets: assigned and confirmed."""
    c = _open(user, cluster_id, version)[int(cluster_id)]
    if c.size == 0:
        raise ReviewError(f"cluster {c.pk} is empty", "empty_cluster", 400)
    ident = _labeled_identity(c.run, identity_id)
    return _assign(user, c, ident, created_identity=None)


def _assign(user, c: Cluster, ident: Identity, created_identity) -> Outcome:
    before = {c.pk: _snapshot(c)}
    now = _now()
    c.assigned_identity = ident
    c.name = ident.name
    c.review_state, c.reviewed_by, c.reviewed_at = Cluster.Review.CONFIRMED, user, now
    _touch(c, user, now)
    c.save()
    extra = {"identity": ident.pk, "created_identity": created_identity}
    return _done(_record(user, ReviewAction.Kind.ASSIGN, c, before, [c], extra=extra), [c])


@transaction.atomic
def assign_new_identity(user, cluster_id: int, version: int, dataset_id: int, name: str) -> Outcome:
    """The explicit way to a new identity: create ``name`` in a labeled dataset of the run and assign it.
    A name that exists already (ignoring case) is refused (409), never merged silently."""
    c = _open(user, cluster_id, version)[int(cluster_id)]
    if c.size == 0:
        raise ReviewError(f"cluster {c.pk} is empty", "empty_cluster", 400)
    try:
        ds = c.run.labeled_datasets.get(pk=int(dataset_id))
    except (TypeError, ValueError, Dataset.DoesNotExist):
        raise ReviewError(f"dataset {dataset_id} is not one of this run's labeled datasets", "other_dataset",
                          400) from None
    try:
        clean = normalize_name(name or "", what="identity name")
    except BadName as exc:
        raise ReviewError(exc.message, exc.code, 400) from None
    existing = Identity.objects.filter(dataset=ds, name__iexact=clean).first()
    if existing is not None:
        raise ReviewError(f"{ds.name!r} already has identity {existing.name!r} (id {existing.pk}); assign that one",
                          "name_taken", 409)
    ident = Identity.objects.create(dataset=ds, name=clean)
    return _assign(user, c, ident, created_identity=ident.pk)


@transaction.atomic
def skip(user, cluster_id: int, version: int | None = None) -> Outcome:
    """Leave the cluster for later: recorded, nothing changes (the lease is released)."""
    c = _lock([cluster_id])[int(cluster_id)]
    if c.lease_user_id == getattr(user, "pk", None):
        c.lease_user, c.lease_until = None, None
        c.save(update_fields=["lease_user", "lease_until"])
    action = ReviewAction.objects.create(run_id=c.run_id, cluster=c, user=user, kind=ReviewAction.Kind.SKIP,
                                         payload={"clusters": {}, "faces": [], "created": [], "version": c.version})
    return _done(action, [c])


def lease(user, cluster_id: int, op: str = "acquire", seconds: int = LEASE_SECONDS) -> Cluster:
    """Hold (``acquire``/``renew``) or let go of (``release``) the cluster while it is open. Another
    user's unexpired lease: 409 naming them."""
    if op not in ("acquire", "renew", "release"):
        raise ReviewError("op must be acquire, renew or release", "bad_op", 400)
    if op == "release":
        return _release(user, cluster_id)
    return _hold(user, cluster_id, seconds)


def _release(user, cluster_id: int) -> Cluster:
    """One conditional UPDATE, no row lock and no transaction around it: a page being left (its
    keepalive POST) never waits behind another request's lock on the cluster."""
    Cluster.objects.filter(pk=int(cluster_id), lease_user_id=getattr(user, "pk", None)) \
        .update(lease_user=None, lease_until=None)
    found = _fresh([int(cluster_id)])
    if not found:
        raise ReviewError(f"no cluster {cluster_id}", "unknown_cluster", 404)
    return found[0]


@transaction.atomic
def _hold(user, cluster_id: int, seconds: int) -> Cluster:
    c = _lock([cluster_id])[int(cluster_id)]
    now = _now()
    _check_lease(c, user)
    c.lease_user, c.lease_until = user, now + timedelta(seconds=max(10, min(int(seconds), 900)))
    c.save(update_fields=["lease_user", "lease_until"])
    return _fresh([c.pk])[0]


# --- undo -------------------------------------------------------------------------------------------


def _touched(action: ReviewAction) -> set[int]:
    return {int(k) for k in (action.payload.get("clusters") or {})}


@transaction.atomic
def undo(user, action_id: int) -> Outcome:
    """Put back what action ``action_id`` changed. Refused (409) when it is undone already, when a later
    action (not undone) changed the same clusters or faces, or when another user holds one of them.
    Annotators undo their own actions; staff anyone's."""
    from facecurate.accounts.roles import is_staff_role

    try:
        action = ReviewAction.objects.select_for_update().get(pk=int(action_id))
    except (TypeError, ValueError, ReviewAction.DoesNotExist):
        raise ReviewError(f"no review action {action_id}", "unknown_action", 404) from None
    if action.user_id != user.pk and not is_staff_role(user):
        raise ReviewError(f"action {action.pk} is {_name(action.user)}'s; only staff undo others' actions",
                          "not_yours", 403)
    if action.undone_at is not None:
        raise ReviewError(f"action {action.pk} was undone already ({_name(action.undone_by)})", "already_undone", 409)
    touched = _touched(action)
    locked = _lock(touched) if touched else {}
    later = ReviewAction.objects.filter(run_id=action.run_id, pk__gt=action.pk, undone_at__isnull=True) \
        .exclude(kind=ReviewAction.Kind.SKIP).select_related("user").order_by("pk")
    for other in later:
        if _touched(other) & touched:
            raise ReviewError(f"{_name(other.user)} changed the same clusters later ({other.kind}, action {other.pk}); "
                              "undo that first", "undo_conflict", 409)
    for c in locked.values():
        _check_lease(c, user)
    face_rows = action.payload.get("faces") or []
    current = {rf.pk: rf for rf in RunFace.objects.filter(pk__in=[r[0] for r in face_rows])}
    for rf_id, _cb, _eb, ca, ea in face_rows:
        rf = current.get(rf_id)
        if rf is None or rf.cluster_id != ca or rf.excluded != ea:
            raise ReviewError(f"run-face {rf_id} changed since action {action.pk}", "undo_conflict", 409)
    # faces back where they were
    by_target: dict[tuple, list[int]] = {}
    for rf_id, cb, eb, _ca, _ea in face_rows:
        by_target.setdefault((cb, eb), []).append(rf_id)
    for (cb, eb), ids in by_target.items():
        RunFace.objects.filter(pk__in=ids).update(cluster_id=cb, excluded=eb)
    now = _now()
    created = set(action.payload.get("created") or [])
    changed = []
    for key, entry in (action.payload.get("clusters") or {}).items():
        c = locked[int(key)]
        if int(key) in created:
            continue
        _restore(c, entry["before"])
        c.version += 1
        c.changed_by, c.changed_at = user, now
        c.save()
        changed.append(c)
    for cid in created:
        if RunFace.objects.filter(cluster_id=cid).exists():
            raise ReviewError(f"cluster {cid} made by action {action.pk} holds faces again", "undo_conflict", 409)
        Cluster.objects.filter(pk=cid).delete()
    made = action.payload.get("created_identity")
    if made and not Cluster.objects.filter(assigned_identity_id=made).exists():
        Identity.objects.filter(pk=made, faces__isnull=True, images__isnull=True).delete()
    action.undone_at, action.undone_by = now, user
    action.save(update_fields=["undone_at", "undone_by"])
    return _done(action, changed)
