"""The merge queue and the recall-aware review queue of a run.

Candidate pairs come from a centroid kNN over the run's clusters as computed, with the merge model's
probability that the two are one identity (:mod:`pipeline.review`). They are computed once per run, by the
run's last stage (:func:`candidates_stage`; for runs from before it, on the first request), and kept as the
run's ``merge_candidates`` artifact. Review changes are followed when the
queue is listed: a cluster merged into another stands for it, answered pairs ("no") are left out,
emptied and dismissed clusters drop out, a cluster review changed is paired again with its nearest
live clusters as they are now, and rejected faces are offered the live clusters nearest them now.

Every similarity the queue reads (centroids, links, ranks, a rejected face's nearest clusters) is taken on the
faces whitened by the within-cluster scatter of the run's clusters (:func:`_whitened`; at the build the
clusters as computed, at each listing the live ones), so that the ways one person's photos vary in this run
count less and a person split in several clusters comes together sooner.

Every item carries ``gain``, the expected pairwise errors it fixes, and ``actions``, the expected
decisions it takes; the review queue orders merges, placements and clean-ups by gain per action. In the
review queue a merge item is a cluster with all its likely partners (``others``, most likely first;
``other`` is the first): one decision accepts the ones that are the same person and says no to the rest
(:func:`answer_group`); a rejected face comes with its likely clusters the same way
(:func:`answer_face_group`). Pairs below the model's probability floor (``p_min`` in merge_model.json, chosen
on training identities) are not offered.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from facecurate.recognition.models import Artifact
from facecurate.recognition.services import artifacts
from pipeline.review.gain import DEEP_MAX

from ..models import Cluster, PipelineRun, ReviewAction, RunFace
from .member_index import member_embeddings
from .stages import art_rel

NAME = "merge_candidates"


@dataclass
class Item:
    kind: str  # "merge" (two clusters), "place" (a rejected face and a cluster), "clean" (one cluster)
    cluster: int
    other: int | None = None
    face: int | None = None
    probability: float | None = None
    gain: float = 0.0
    actions: float = 1.0
    others: list | None = None  # a merge group: [{"id": cluster, "probability": q}, ...], most likely first
    stage: str = "likely"  # the review queue's pass: likely, lone (faces alone), unlikely, last (past every answer)

    @property
    def per_action(self) -> float:
        return self.gain / max(self.actions, 1e-9)

    def as_dict(self) -> dict:
        return {**asdict(self), "per_action": self.per_action}


def _embeddings(run: PipelineRun, face_ids: list[int]) -> np.ndarray:
    """The faces' embeddings from the run's member index (O(faces asked), not a read of the dataset's files)."""
    return member_embeddings(run, face_ids) if face_ids else np.zeros((0, 128), np.float32)


def _whitened(emb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit rows of ``emb`` whitened by the within-cluster scatter of ``labels`` (-1: no cluster;
    :func:`pipeline.clustering.wccn.within_class_whitening`): the directions in which one person's photos
    vary in this run count less, so a person's clusters come nearer each other. Computed again at each
    listing from the clusters as review left them. On the training identities it cut the actions to F 0.99
    on both families of sets (:data:`pipeline.review.candidates.WHITEN_SHRINK`, chosen there)."""
    from pipeline.clustering.wccn import whiten, within_class_whitening
    from pipeline.review.candidates import WHITEN_SHRINK

    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return whiten(emb, within_class_whitening(emb, labels, WHITEN_SHRINK))  # no faces: the identity


def build(run: PipelineRun) -> dict:
    """Compute and store the run's candidate pairs (clusters as the cluster stage made them) and each
    cluster's nearest others. A rejected face's offers are computed when the queue is listed, over the
    live clusters then (:func:`_place_offers`); the build no longer places every face (a kNN of every
    face and a loop over them, whose result nothing read)."""
    from pipeline.review.candidates import FEATURES, centroids, cluster_pairs, nearest_others
    from pipeline.review.merge_model import probability

    rows = list(RunFace.objects.filter(run=run, original_cluster__isnull=False).order_by("id")
                .values_list("id", "face_id", "original_cluster_id", "p_minus"))
    cids, labels = np.unique(np.array([r[2] for r in rows], np.int64), return_inverse=True)
    p = np.array([np.nan if r[3] is None else r[3] for r in rows], np.float64)
    emb = _whitened(_embeddings(run, [r[1] for r in rows]), labels)
    nf = len(FEATURES)
    pairs, feats = cluster_pairs(emb, labels, p) if len(rows) else (np.zeros((0, 2), np.int64), np.zeros((0, nf)))
    nbr, nbr_sim = nearest_others(centroids(emb, labels, len(cids)), PAIR_K) if len(rows) else \
        (np.zeros((0, PAIR_K), np.int64), np.zeros((0, PAIR_K), np.float32))
    arrays = {
        "clusters": cids,  # each cluster's nearest others as built (ids, similarities): reverse pairs
        "nbr": np.where(nbr >= 0, cids[np.maximum(nbr, 0)] if len(cids) else nbr, -1),
        "nbr_sim": nbr_sim,
        "a": cids[pairs[:, 0]] if len(pairs) else np.zeros(0, np.int64),
        "b": cids[pairs[:, 1]] if len(pairs) else np.zeros(0, np.int64),
        "prob": probability(feats) if len(pairs) else np.zeros(0),
    }
    art = artifacts.write_npz(art_rel(run, NAME), Artifact.Kind.REPORT, run.job, **arrays)
    return artifacts.read_npz_cached(art)


def candidates_stage(ctx, run: PipelineRun) -> None:
    """The run's last stage: the merge queue's candidates built in the worker, so that the first listing
    of the review queue does not build them inside a request (100k faces: 9.5 s, 300k: 28 s,
    bench/results/merge_candidates_build.md). Runs finished before this stage existed build them on the
    first listing, as before."""
    build(run)


def candidates(run: PipelineRun) -> dict:
    art = Artifact.objects.filter(path=art_rel(run, NAME)).first()
    return artifacts.read_npz_cached(art) if art else build(run)


def _merged_into(run: PipelineRun) -> dict[int, int]:
    out = {}
    for cid, payload in ReviewAction.objects.filter(run=run, kind=ReviewAction.Kind.MERGE, undone_at__isnull=True) \
            .values_list("cluster_id", "payload"):
        out[int(payload["target"])] = cid
    return out


def _resolver(run: PipelineRun):
    into = _merged_into(run)

    def resolve(cid: int) -> int:
        seen = 0
        while cid in into and seen < 10_000:
            cid, seen = into[cid], seen + 1
        return cid
    return resolve


def _answered(run: PipelineRun, resolve) -> tuple[set, set]:
    pairs, faces = set(), set()
    for cid, payload in ReviewAction.objects.filter(run=run, kind=ReviewAction.Kind.DISTINCT,
                                                    undone_at__isnull=True).values_list("cluster_id", "payload"):
        if "pair" in payload:
            a, b = (resolve(int(x)) for x in payload["pair"])
            pairs.add((min(a, b), max(a, b)))
        elif "face" in payload:
            faces.add((int(payload["face"]), resolve(cid)))
    return pairs, faces


def _live(run: PipelineRun) -> dict[int, Cluster]:
    return {c.pk: c for c in Cluster.objects.filter(run=run, size__gt=0).exclude(review_state=Cluster.Review.DISMISSED)}


def _pair_probabilities(run: PipelineRun, cand: dict, resolve, live: dict, no_pairs: set, now=None,
                        floor: float | None = None, deep: bool = False) -> dict[tuple, float]:
    """Open candidate pairs (a < b, both live, not answered no) with their probability, those under the
    probability floor left out. A cluster review changed (merged into, cleaned, placed into, confirmed)
    is paired again with its nearest live clusters as they are now, and every pair it is in is scored
    again on the faces it holds now: a stale probability times a grown size would put doubtful pairs
    first, and a grown cluster has new neighbours the build-time kNN never saw."""
    from pipeline.review.merge_model import probability_floor

    best: dict[tuple, float] = {}
    for a, b, q in zip(cand["a"].tolist(), cand["b"].tolist(), cand["prob"].tolist()):
        a, b = resolve(a), resolve(b)
        key = (min(a, b), max(a, b))
        if a != b and a in live and b in live and key not in no_pairs:
            best[key] = max(best.get(key, 0.0), q)
    changed = {c for c, x in live.items() if x.version > 1 or x.number is None}  # number None: made in review
    if deep:  # every live cluster with its nearest clusters now, as many more as it has answered no
        changed = set(live)
    if changed:
        now = now or _current(run, live)
        for key in _fresh_pairs(now, changed, _deeper(no_pairs) if deep else None, cand):
            if key not in no_pairs:
                best.setdefault(key, 0.0)
        best = _rescored(now, best, changed)
    floor = probability_floor() if floor is None else floor
    return {k: q for k, q in best.items() if q >= floor}


@dataclass
class _Review:
    """What review has done to a run so far, read once per listing of the queue."""
    cand: dict
    resolve: object  # cluster id -> the live cluster it was merged into
    live: dict
    no_pairs: set
    no_faces: set
    now: "_Now"


def _review(run: PipelineRun) -> _Review:
    cand, resolve = candidates(run), _resolver(run)
    live = _live(run)
    no_pairs, no_faces = _answered(run, resolve)
    return _Review(cand, resolve, live, no_pairs, no_faces, _current(run, live))


def merge_items(run: PipelineRun, face: int | None = None) -> list[Item]:
    """The merge queue: cluster pairs and rejected faces against their likely clusters, most gain first
    (``face``: only that rejected face's offers)."""
    r = _review(run)
    best = _pair_probabilities(run, r.cand, r.resolve, r.live, r.no_pairs, r.now) if face is None else {}
    items = [Item("merge", a, b, probability=q, gain=float(q * r.live[a].size * r.live[b].size))
             for (a, b), q in best.items()]
    items += [Item("place", c, face=rf, probability=q, gain=float(q * r.live[c].size))
              for rf, offers in _place_offers(r.now, r.live, r.no_faces, face).items() for c, q in offers]
    items.sort(key=lambda it: (-it.per_action, it.cluster, it.other or 0, it.face or 0))
    return items


def group_items(run: PipelineRun, floor: float | None = None, deep: bool = False,
                r: _Review | None = None) -> list[Item]:
    """Merge groups (a cluster with all its likely partners, one decision) and rejected faces, each
    with its likely clusters (one decision: the one that is its person, or none). ``floor``: the
    probability under which pairs are left out (the model's ``p_min`` by default); ``deep``: every
    live cluster paired again with its nearest clusters now, and every rejected face offered its
    nearest ones, past the ones answered no (the queue's last resort: on lfw16_train, offering them
    earlier cost 13 actions, 421 -> 434); ``r``: the review state, when the caller has read it."""
    from pipeline.review.gain import merge_groups

    r = r or _review(run)
    best = _pair_probabilities(run, r.cand, r.resolve, r.live, r.no_pairs, r.now, floor, deep)
    sizes = {c: x.size for c, x in r.live.items()}
    items = [Item("merge", a, partners[0][0], probability=partners[0][1], gain=gain,
                  others=[{"id": b, "probability": q} for b, q in partners])
             for gain, a, partners in merge_groups(((a, b, q) for (a, b), q in best.items()), sizes)]
    return items + _place_items(_place_offers(r.now, r.live, r.no_faces, None, deep), sizes)


def small_groups(r: _Review) -> list[Item]:
    """The queue's second pass, once nothing above the probability floor is left: each live cluster of at most
    :data:`pipeline.review.gain.SMALL` faces shown with its nearest live clusters not answered no, however far
    down its neighbours they are (up to DEEP_MAX), and each rejected face with its nearest clusters past the ones
    answered no. A lone face left after the likely merges is most often a photo of someone the clusterer and the
    merge model both missed (on lfw16_test at 16 px its person lay at rank 11 to 45 of its nearest clusters); a
    person looks through its next nearest, a group at a time. On the training sets, where it begins past F 0.99,
    it took lfw16_train from F 0.99 to 0.995 in 28 actions, not 60 (bench/results/review_queue_replay.md)."""
    from pipeline.review.candidates import centroids, lone_groups
    from pipeline.review.gain import MAX_PARTNERS, SMALL, SMALL_SCORED

    now, sizes = r.now, {c: x.size for c, x in r.live.items()}
    small = [i for i, c in enumerate(now.cids.tolist()) if sizes[c] <= SMALL]
    groups = lone_groups(centroids(now.emb, now.lab, len(now.cids)), now.cids, small, r.no_pairs, MAX_PARTNERS,
                         DEEP_MAX, SMALL_SCORED) if small else {}
    q = _rescored(now, {(a, b): 0.0 for a, bs in groups.items() for b in bs}, set(groups))
    items = []
    for a, bs in groups.items():
        partners = sorted(((b, q[(a, b)]) for b in bs), key=lambda x: (-x[1], x[0]))
        if partners:
            items.append(Item("merge", a, partners[0][0], probability=partners[0][1],
                              gain=float(sizes[a] * sum(x * sizes[b] for b, x in partners)),
                              others=[{"id": b, "probability": x} for b, x in partners]))
    return items + _place_items(_place_offers(now, r.live, r.no_faces, None, deep=True), sizes)


def _place_items(offers: dict, sizes: dict) -> list[Item]:
    return [Item("place", o[0][0], face=rf, probability=o[0][1], gain=float(sum(q * sizes[c] for c, q in o)),
                 others=[{"id": c, "probability": q} for c, q in o]) for rf, o in offers.items() if o]


@dataclass
class _Now:
    """The run's faces as review left them: those of live clusters and the rejected ones."""
    rf: np.ndarray  # run-face ids
    lab: np.ndarray  # index into ``cids`` (-1: rejected)
    cids: np.ndarray  # live cluster ids
    p: np.ndarray
    emb: np.ndarray  # unit rows


def _current(run: PipelineRun, live: dict) -> _Now:
    rows = [r for r in RunFace.objects.filter(run=run).order_by("id")
            .values_list("id", "face_id", "cluster_id", "p_minus", "excluded")
            if r[2] in live or (r[2] is None and r[4] == RunFace.Excluded.REJECTED)]
    cids = np.array(sorted(live), np.int64)
    pos = {int(c): i for i, c in enumerate(cids)}
    lab = np.array([pos.get(r[2], -1) for r in rows], np.int64)
    emb = _whitened(_embeddings(run, [r[1] for r in rows]), lab)
    return _Now(np.array([r[0] for r in rows], np.int64), lab, cids,
                np.array([0.0 if r[3] is None else r[3] for r in rows], np.float64), emb)


PAIR_K = 10  # nearest clusters paired with a changed one (at most DEEP_MAX when going deeper)


def _past_answered(k: int, answered: Counter, keys) -> int:
    """How many nearest clusters to look at so that the most answered of ``keys`` (by ``answered``,
    its "no"s) still has ``k`` open ones: at most DEEP_MAX."""
    return min(k + max((answered[x] for x in keys), default=0), DEEP_MAX)


def _deeper(no_pairs: set) -> int:
    """Nearest clusters to pair each cluster with, past the pairs answered no."""
    nos = Counter(c for pair in no_pairs for c in pair)
    return _past_answered(PAIR_K, nos, nos)


def _fresh_pairs(now: _Now, changed: set[int], k: int | None = None, cand: dict | None = None) -> set[tuple]:
    """Each changed cluster with its ``k`` nearest live clusters as they are now (a < b), and each
    unchanged cluster with the changed ones that are now among its PAIR_K nearest (``cand``: the
    candidates artifact, whose ``nbr``/``nbr_sim`` hold each cluster's nearest others as built)."""
    from pipeline.review.candidates import centroids, cluster_pairs, reverse_pairs

    only = [i for i, c in enumerate(now.cids.tolist()) if c in changed]
    if not only or len(now.cids) < 2:
        return set()
    pairs, _ = cluster_pairs(now.emb, now.lab, now.p, k=k or PAIR_K, only=only)
    if cand is not None and "nbr" in cand:  # artifacts built before stop 27 lack it
        rows, ids, sims = _known_neighbours(now, changed, cand)
        back = reverse_pairs(centroids(now.emb, now.lab, len(now.cids)), only, rows, ids, sims, PAIR_K)
        pairs = np.concatenate([pairs, back])
    return {(min(a, b), max(a, b)) for a, b in now.cids[pairs].tolist()}


def _known_neighbours(now: _Now, changed: set[int], cand: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The live clusters the candidates were built with (rows of ``now``), and each live cluster's
    nearest others as built, as rows of ``now`` (-1: gone or changed since; all -1 for the others)."""
    built, nbr = cand["clusters"], cand["nbr"]
    rows = np.flatnonzero(np.isin(now.cids, built))
    at = np.searchsorted(built, now.cids[rows])  # cand["clusters"] is sorted (np.unique)
    there = np.isin(nbr[at], now.cids) & ~np.isin(nbr[at], list(changed))
    ids = np.full((len(now.cids), nbr.shape[1]), -1, np.int64)
    sims = np.zeros(ids.shape, np.float64)
    ids[rows] = np.where(there, np.searchsorted(now.cids, nbr[at]), -1)  # now.cids is sorted too
    sims[rows] = cand["nbr_sim"][at]
    return rows, ids, sims


PLACE_K = 5  # a rejected face is shown with its nearest live clusters, this many (3 and 5 tried on the training sets: 5)


def _place_offers(now: _Now, live: dict, no_faces: set, face: int | None, deep: bool = False) -> dict[int, list]:
    """Each rejected face (or just ``face``): its likely live clusters as they are now, not answered no,
    most likely first: {run-face: [(cluster, q), ...]}."""
    from pipeline.review.candidates import face_placements
    from pipeline.review.merge_model import probability

    rows = np.flatnonzero((now.lab < 0) & ((now.rf == face) if face is not None else True))
    if not len(rows) or not len(now.cids):
        return {}
    nos = Counter(f for f, _ in no_faces)  # deep: a face answered no for its nearest is offered the next ones
    depth = _past_answered(PLACE_K, nos, now.rf[rows].tolist()) if deep else PLACE_K
    place, feats = face_placements(now.emb, now.lab, k=depth, p_minus=now.p, rows=rows)
    q = probability(feats[rows].reshape(-1, feats.shape[-1])).reshape(len(rows), -1)
    out = {}
    for i, row in enumerate(rows.tolist()):
        rf = int(now.rf[row])
        offers = [(int(now.cids[c]), float(x)) for c, x in zip(place[row].tolist(), q[i].tolist())
                  if c >= 0 and (rf, int(now.cids[c])) not in no_faces][:PLACE_K]
        out[rf] = sorted(offers, key=lambda o: (-o[1], o[0]))
    return out


def _rescored(now: _Now, best: dict[tuple, float], changed: set[int]) -> dict[tuple, float]:
    """Pairs that involve a cluster review changed scored again on the faces it holds now."""
    from pipeline.review.candidates import centroids, members_of, neighbour_ranks, pair_features
    from pipeline.review.merge_model import probability

    redo = [k for k in best if k[0] in changed or k[1] in changed]
    if not redo:
        return best
    pos = {int(c): i for i, c in enumerate(now.cids)}
    cent = centroids(now.emb, now.lab, len(now.cids))
    members = members_of(now.lab, len(now.cids))
    pmax = np.array([now.p[m].max() if len(m) else 0.0 for m in members])
    ranks = neighbour_ranks(cent, [pos[c] for key in redo for c in key])
    feats = [pair_features(now.emb, members, pmax, pos[a], pos[b], float(cent[pos[a]] @ cent[pos[b]]), now.p, ranks)
             for a, b in redo]
    return {**best, **dict(zip(redo, probability(np.array(feats)).tolist()))}


def clean_items(run: PipelineRun, deep: bool = False, every: bool = False) -> list[Item]:
    """Pending clusters to clean, with the expected pairwise errors their wrong members make (p- read as
    P(stray) by :mod:`pipeline.review.stray_model`); those expected to be clean already
    (:func:`pipeline.review.gain.worth_cleaning`) are left out. A face a
    person placed, that came in with a cluster a person merged in, or that a person split off with others
    of its person, counts as right (p- 0): its p- was about the cluster the clusterer put it in, and a
    person has since put it where it is. ``deep`` (the queue's last resort): every face at its own p-
    (a merged-in cluster brings its strays along), every pending cluster expected to hold any wrong
    pair, and the confirmed clusters changed since their confirm (merges into them). ``every``: the
    pending clusters expected to hold any wrong pair, not only those worth cleaning."""
    from pipeline.review.gain import cleanup_gain, worth_cleaning
    from pipeline.review.stray_model import probability as stray_probability

    placed = set() if deep else _moved_by_review(run)
    states = [Cluster.Review.PENDING, Cluster.Review.CONFIRMED] if deep else [Cluster.Review.PENDING]
    by: dict[int, list] = {}
    for rf, cid, p, state, changed, reviewed in RunFace.objects.filter(
            run=run, cluster__review_state__in=states).values_list(
            "id", "cluster_id", "p_minus", "cluster__review_state", "cluster__changed_at", "cluster__reviewed_at"):
        if state == Cluster.Review.CONFIRMED and not (changed and reviewed and changed > reviewed):
            continue
        by.setdefault(cid, []).append(0.0 if rf in placed else (np.nan if p is None else p))
    items = []
    for cid, ps in by.items():
        fixed, actions = cleanup_gain(stray_probability(ps, len(ps)))
        if (fixed > 0) if deep or every else worth_cleaning(fixed):
            items.append(Item("clean", cid, gain=fixed, actions=actions))
    items.sort(key=lambda it: (-it.per_action, it.cluster))
    return items


def _moved_by_review(run: PipelineRun) -> set[int]:
    """Run-faces a person put where they are: placed (a rejected face put in a cluster), merged in with
    their cluster, or split off together into a new one, actions not undone."""
    out: set[int] = set()
    kinds = [ReviewAction.Kind.MOVE, ReviewAction.Kind.MERGE, ReviewAction.Kind.SPLIT]
    for kind, payload in ReviewAction.objects.filter(run=run, kind__in=kinds, undone_at__isnull=True) \
            .values_list("kind", "payload"):
        if kind != ReviewAction.Kind.MOVE or payload.get("placed"):
            out |= {int(row[0]) for row in payload.get("faces", [])}
    return out


def _staged(items: list[Item], stage: str) -> list[Item]:
    for i in items:
        i.stage = stage
    return items


def review_items(run: PipelineRun) -> list[Item]:
    """One queue: merge groups, placements and clean-ups by expected pairwise errors fixed per action.
    Once nothing above the probability floor is left, the small clusters and rejected faces, each with its
    next nearest clusters past the ones answered no (:func:`small_groups`); once those are answered too,
    the merge groups under the floor and the clean-ups under
    the clean-up floor, by gain per action (with the merges alone there, lfw16_train's queue spent 251
    of 507 actions on "no"s and stopped short of F 0.99 when the clean-up floor was 2; 338 actions to
    F 0.99 with both, bench/review_queue_replay.py); once
    those are answered too, each cluster's and rejected face's next nearest clusters past the ones
    answered no, and every clean-up that may still find a stray (``clean_items(deep=True)``): the queue
    does not run dry while the person is still reviewing."""
    from pipeline.review.gain import worth_cleaning

    r = _review(run)  # read once for the passes below
    cleans = clean_items(run, every=True)  # every pending clean-up that may find a stray
    items = group_items(run, r=r) + [i for i in cleans if worth_cleaning(i.gain)]
    if not items:  # the small clusters and the rejected faces, each with its next nearest clusters
        items = _staged(small_groups(r), "lone")
    if not items:  # the merges under the floor and the clean-ups under CLEAN_MIN, by gain per action
        items = _staged([i for i in group_items(run, floor=0.0, r=r) if i.kind == "merge"] + cleans, "unlikely")
    if not items:  # every candidate answered: each cluster's and rejected face's next nearest clusters,
        # and the clean-ups left: strays merged in with their cluster, merges into confirmed clusters
        items = _staged(group_items(run, floor=0.0, deep=True, r=r) + clean_items(run, deep=True), "last")
    items.sort(key=lambda it: (-it.per_action, {"merge": 0, "place": 1, "clean": 2}[it.kind], it.cluster,
                               it.other or 0, it.face or 0))
    return items


# The answers live in merge_answers; their names stay here for the callers of this module.
from .merge_answers import accept_merges, answer_face, answer_face_group, answer_group, answer_pair  # noqa: E402,F401
