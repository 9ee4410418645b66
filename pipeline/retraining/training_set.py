"""The retraining set: labeled faces plus pseudo-labeled faces from reviewed pipeline runs.

``build_training_set(labeled_identity, unlabeled, config)`` is a pure function over arrays (no
database, no files): it decides, for every unlabeled face, whether it joins training, under which
class and with which loss weight, and reports every face it leaves out with the reason.

Rules, applied in this order (the paper's step 7, plus what the reviewers decided):

1. Labeled faces: one class per distinct labeled identity id (sorted), weight 1.
2. ``overlap_state == -1`` (a reviewer rejected the face): dropped, ``overlap_rejected``.
   ``overlap_state == 1`` (its identity is already labeled): ``overlap="discard"`` (default; the
   paper trains only on the disjoint faces) drops it, ``overlap_discarded``; ``"add_to_predicted"``
   adds it to the class of ``predicted_identity`` (``overlap_unknown_identity`` when that is not a
   labeled identity). Only ``overlap_state == 0`` faces go on to clusters.
3. ``cluster_id == -1`` (not clustered, or taken out of its cluster by a reviewer): ``unclustered``.
4. Clusters are keyed by (run_id, cluster_id): cluster ids are only unique within a run.
   ``cluster_confirmed`` and ``cluster_assigned_identity`` must be constant within a cluster.
5. Weights. A confirmed cluster counts as p- = 0 (weight 1). Every other kept unlabeled face gets
   ``(1 - p-) ** gamma`` in soft mode and 1 in hard mode (``soft=False``). A NaN p- means no
   estimate was made; in soft mode such a face is dropped (``p_minus_missing``) rather than given
   full trust, since soft weighting exists to limit the damage of wrong assignments. Hard mode
   ignores p- (NaN included), except to order faces for the cap.
6. A cluster assigned to a labeled identity joins that identity's class (whatever its size).
   Every other cluster becomes a new pseudo-identity and needs ``min_cluster_size`` faces left
   after step 5 (``cluster_too_small``): a one-face class teaches nothing about within-identity
   variation. With ``max_clusters`` only the largest pseudo-identity clusters are kept (size after
   step 5, ties by (run_id, cluster_id)); the others are dropped (``max_clusters``).
7. ``max_faces_per_cluster`` caps every cluster, keeping its faces with the lowest p- first (the
   most certain; ties, NaN last, by (run_id, face_id)); the rest are dropped (``cluster_capped``).
   The cap stops one huge cluster from dominating the loss.
8. Pseudo-identity classes get indices after the labeled classes, in (run_id, cluster_id) order.

Output rows: the labeled faces in input order, then the kept unlabeled faces in input order.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

SOURCES = ("labeled", "pseudo", "overlap")
DROP_REASONS = ("overlap_rejected", "overlap_discarded", "overlap_unknown_identity", "unclustered",
                "p_minus_missing", "cluster_too_small", "max_clusters", "cluster_capped")


@dataclass
class UnlabeledFaces:
    """Per-face arrays (all (N,)) for the unlabeled faces of one or more pipeline runs."""

    run_id: np.ndarray  # int
    face_id: np.ndarray  # int, unique within a run
    cluster_id: np.ndarray  # int, -1 = unclustered / removed from its cluster by a reviewer
    cluster_confirmed: np.ndarray  # bool, the face's cluster was confirmed by a reviewer
    cluster_assigned_identity: np.ndarray  # int, -1 none, else the labeled identity its cluster joins
    overlap_state: np.ndarray  # int, 1 overlap (identity already labeled), 0 disjoint, -1 rejected
    predicted_identity: np.ndarray  # int, the labeled identity the recognizer predicts (-1 none)
    p_minus: np.ndarray  # float in [0, 1], NaN = no estimate

    def __post_init__(self) -> None:
        n = None
        for f in fields(self):
            arr = np.asarray(getattr(self, f.name))
            if arr.ndim != 1:
                raise ValueError(f"unlabeled.{f.name} must be 1-D (N,), got shape {arr.shape}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise ValueError(f"unlabeled.{f.name} has {arr.shape[0]} rows, run_id has {n}")
            if f.name == "cluster_confirmed":  # (empty arrays may have any dtype)
                if arr.size and arr.dtype != np.bool_:
                    raise ValueError(f"unlabeled.cluster_confirmed must be bool, got {arr.dtype}")
                arr = arr.astype(bool)
            elif f.name == "p_minus":
                if arr.size and not np.issubdtype(arr.dtype, np.floating):
                    raise ValueError(f"unlabeled.p_minus must be floating point, got {arr.dtype}")
                arr = arr.astype(np.float64)
                finite = arr[~np.isnan(arr)]
                if np.isinf(arr).any() or ((finite < 0) | (finite > 1)).any():
                    raise ValueError("unlabeled.p_minus must lie in [0, 1] (NaN allowed for 'no estimate')")
            else:
                if arr.size and not np.issubdtype(arr.dtype, np.integer):
                    raise ValueError(f"unlabeled.{f.name} must be an integer array, got {arr.dtype}")
                arr = arr.astype(np.int64)
            setattr(self, f.name, arr)
        if not np.isin(self.overlap_state, (-1, 0, 1)).all():
            raise ValueError("unlabeled.overlap_state must be 1 (overlap), 0 (disjoint) or -1 (rejected)")
        for name in ("cluster_id", "cluster_assigned_identity", "predicted_identity"):
            if (getattr(self, name) < -1).any():
                raise ValueError(f"unlabeled.{name} must be >= -1 (-1 = none)")
        if len(self) and len(np.unique(np.stack([self.run_id, self.face_id], 1), axis=0)) != len(self):
            raise ValueError("unlabeled (run_id, face_id) pairs must be unique")

    def __len__(self) -> int:
        return int(self.run_id.shape[0])


@dataclass(frozen=True)
class RetrainConfig:
    gamma: float = 1.0  # soft weight (1 - p-) ** gamma
    soft: bool = True  # False: every kept face weighs 1
    overlap: str = "discard"  # 'discard' | 'add_to_predicted'
    min_cluster_size: int = 2  # faces a new pseudo-identity needs
    max_faces_per_cluster: int | None = 50  # None: no cap
    max_clusters: int | None = None  # keep only the largest pseudo-identity clusters (None: all)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.gamma) and self.gamma >= 0):
            raise ValueError(f"gamma must be finite and >= 0, got {self.gamma}")
        if self.overlap not in ("discard", "add_to_predicted"):
            raise ValueError(f"overlap must be 'discard' or 'add_to_predicted', got {self.overlap!r}")
        if int(self.min_cluster_size) < 1:
            raise ValueError(f"min_cluster_size must be >= 1, got {self.min_cluster_size}")
        if self.max_faces_per_cluster is not None and int(self.max_faces_per_cluster) < 1:
            raise ValueError(f"max_faces_per_cluster must be >= 1 or None, got {self.max_faces_per_cluster}")
        if self.max_clusters is not None and int(self.max_clusters) < 0:
            raise ValueError(f"max_clusters must be >= 0 or None, got {self.max_clusters}")


@dataclass
class TrainingSet:
    """One row per training face. ``row`` indexes ``labeled_identity`` for labeled rows and the
    unlabeled arrays otherwise; ``run_id`` / ``face_id`` are -1 on labeled rows."""

    class_index: np.ndarray  # (M,) int64 in [0, num_classes)
    weight: np.ndarray  # (M,) float32 in [0, 1]
    source: np.ndarray  # (M,) str: 'labeled' | 'pseudo' | 'overlap'
    row: np.ndarray  # (M,) int64
    run_id: np.ndarray  # (M,) int64
    face_id: np.ndarray  # (M,) int64
    class_identity: np.ndarray  # (C,) int64: labeled identity id of each class, -1 for pseudo-identities
    class_cluster: np.ndarray  # (C, 2) int64: (run_id, cluster_id) of each pseudo-identity, -1 for labeled
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.class_identity.shape[0])

    def __len__(self) -> int:
        return int(self.class_index.shape[0])


def _check_labeled(labeled_identity: np.ndarray) -> np.ndarray:
    arr = np.asarray(labeled_identity)
    if arr.ndim != 1:
        raise ValueError(f"labeled_identity must be 1-D (L,), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labeled_identity must be an integer array, got {arr.dtype}")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise ValueError("labeled_identity ids must be >= 0")
    return arr


def build_training_set(labeled_identity: np.ndarray, unlabeled: UnlabeledFaces,
                       config: RetrainConfig | None = None) -> TrainingSet:
    """Labeled faces + the pseudo-labeled faces the rules in this module's docstring keep."""
    config = config or RetrainConfig()
    if not isinstance(unlabeled, UnlabeledFaces):
        raise ValueError(f"unlabeled must be an UnlabeledFaces, got {type(unlabeled).__name__}")
    labeled = _check_labeled(labeled_identity)
    st = _State.start(labeled, unlabeled, config)
    _overlap_faces(st)
    _cluster_faces(st)
    return _assemble(st, labeled)


@dataclass
class _State:
    """The builder's working arrays over the unlabeled faces (one entry each)."""

    u: UnlabeledFaces
    config: RetrainConfig
    identities: np.ndarray  # labeled class k <-> identities[k]
    keep: np.ndarray
    cls: np.ndarray
    src: np.ndarray
    p: np.ndarray
    nan: np.ndarray
    dropped: dict[str, int]
    clusters: dict[str, int]
    pseudo_keys: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def start(cls, labeled: np.ndarray, u: UnlabeledFaces, config: RetrainConfig) -> "_State":
        n = len(u)
        return cls(u=u, config=config, identities=np.unique(labeled), keep=np.zeros(n, bool),
                   cls=np.full(n, -1, np.int64), src=np.full(n, "", dtype=object), p=u.p_minus.copy(),
                   nan=np.isnan(u.p_minus), dropped={r: 0 for r in DROP_REASONS},
                   clusters={"clusters": 0, "confirmed": 0, "joined_labeled": 0, "pseudo_identities": 0,
                             "too_small": 0, "over_max_clusters": 0, "capped": 0})

    def drop(self, mask: np.ndarray, reason: str) -> None:
        self.dropped[reason] += int(np.count_nonzero(mask))


def _overlap_faces(st: _State) -> None:
    """Rule 2: rejected faces go; overlap faces go, or join the labeled identity they were predicted as."""
    u, config = st.u, st.config
    st.drop(u.overlap_state == -1, "overlap_rejected")
    over = u.overlap_state == 1
    if config.overlap == "discard":
        st.drop(over, "overlap_discarded")
        return
    known = over & np.isin(u.predicted_identity, st.identities)
    st.drop(over & ~known, "overlap_unknown_identity")
    missing = known & st.nan & config.soft
    st.drop(missing, "p_minus_missing")
    ok = known & ~missing
    st.keep[ok] = True
    st.cls[ok] = np.searchsorted(st.identities, u.predicted_identity[ok])
    st.src[ok] = "overlap"


def _group_clusters(u: UnlabeledFaces, rows: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The (run, cluster) keys of ``rows`` in sorted order and each key's member rows: one sort, no mask per cluster."""
    keys, inv = np.unique(np.stack([u.run_id[rows], u.cluster_id[rows]], 1), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    return keys, np.split(rows[order], np.cumsum(np.bincount(inv, minlength=len(keys)))[:-1])


def _cluster_faces(st: _State) -> None:
    """Rules 3-8 for the clustered disjoint faces: confirmed, assigned, too small, the largest kept, capped."""
    u = st.u
    disjoint = u.overlap_state == 0
    st.drop(disjoint & (u.cluster_id == -1), "unclustered")
    clustered = np.flatnonzero(disjoint & (u.cluster_id >= 0))
    if not clustered.size:
        return
    keys, members = _group_clusters(u, clustered)
    st.clusters["clusters"] = len(keys)
    candidates = []  # (cluster index, kept member rows) of would-be pseudo-identities
    for c, rows in enumerate(members):
        rows = _cluster_rows(st, tuple(keys[c]), rows)
        if rows is not None:
            candidates.append((c, rows))
    for j, (c, rows) in enumerate(_limit_clusters(st, keys, candidates)):  # keys are sorted: candidates in key order
        st.cls[rows] = len(st.identities) + j
        st.pseudo_keys.append((int(keys[c][0]), int(keys[c][1])))
        _accept(st, rows)
    st.clusters["pseudo_identities"] = len(st.pseudo_keys)


def _cluster_rows(st: _State, key: tuple[int, int], rows: np.ndarray) -> np.ndarray | None:
    """One cluster's decision: joined to its assigned labeled identity (accepted here, None), dropped as too
    small (None), or its usable rows as a would-be pseudo-identity."""
    u = st.u
    conf, ident = u.cluster_confirmed[rows], u.cluster_assigned_identity[rows]
    if (conf != conf[0]).any() or (ident != ident[0]).any():
        raise ValueError(f"cluster (run {key[0]}, id {key[1]}) has mixed cluster_confirmed or "
                         "cluster_assigned_identity values; they are per-cluster decisions")
    if conf[0]:
        st.p[rows] = 0.0  # 5. a confirmed cluster counts as p- = 0
        st.clusters["confirmed"] += 1
    elif st.config.soft:
        st.drop(st.nan[rows], "p_minus_missing")
        rows = rows[~st.nan[rows]]
    if ident[0] >= 0:
        if not np.isin(ident[0], st.identities):
            raise ValueError(f"cluster (run {key[0]}, id {key[1]}) is assigned to identity {ident[0]}, "
                             "which has no labeled faces")
        st.clusters["joined_labeled"] += 1
        st.cls[rows] = int(np.searchsorted(st.identities, ident[0]))
        _accept(st, rows)
        return None
    if len(rows) < st.config.min_cluster_size:  # 6.
        st.drop(np.ones(len(rows), bool), "cluster_too_small")
        st.clusters["too_small"] += 1
        return None
    return rows


def _limit_clusters(st: _State, keys: np.ndarray, candidates: list) -> list:
    """Rule 7: only the ``max_clusters`` largest pseudo-identities (ties by key), in key order."""
    limit = st.config.max_clusters
    if limit is None or len(candidates) <= limit:
        return candidates
    order = sorted(range(len(candidates)), key=lambda i: (-len(candidates[i][1]), tuple(keys[candidates[i][0]])))
    chosen = set(order[:limit])
    for i, (_, rows) in enumerate(candidates):
        if i not in chosen:
            st.drop(np.ones(len(rows), bool), "max_clusters")
            st.clusters["over_max_clusters"] += 1
    return [candidates[i] for i in sorted(chosen)]


def _assemble(st: _State, labeled: np.ndarray) -> TrainingSet:
    """Labeled rows first, then the kept unlabeled faces with their weights; the report."""
    u, config, identities = st.u, st.config, st.identities
    kept = np.flatnonzero(st.keep)
    w_unl = np.power(1.0 - st.p[kept], config.gamma) if config.soft else np.ones(len(kept), np.float64)
    n_lab = len(labeled)
    class_index = np.concatenate([np.searchsorted(identities, labeled), st.cls[kept]]).astype(np.int64)
    source = np.concatenate([np.full(n_lab, "labeled", dtype=object), st.src[kept]]).astype(str)
    class_identity = np.concatenate([identities, np.full(len(st.pseudo_keys), -1)]).astype(np.int64)
    class_cluster = np.concatenate([np.full((len(identities), 2), -1),
                                    np.asarray(st.pseudo_keys, np.int64).reshape(-1, 2)])
    assert sum(st.dropped.values()) + len(kept) == len(u), "every unlabeled face is kept or dropped with a reason"
    report = {
        "labeled_faces": n_lab, "labeled_classes": int(len(identities)), "unlabeled_faces": len(u),
        "kept": {s: int((source == s).sum()) for s in SOURCES}, "dropped": st.dropped,
        "clusters": st.clusters, "num_classes": int(len(class_identity)), "rows": int(len(class_index)),
        "weight_sum_unlabeled": float(w_unl.sum()), "config": asdict(config),
    }
    return TrainingSet(class_index=class_index, weight=np.concatenate([np.ones(n_lab), w_unl]).astype(np.float32),
                       source=source, row=np.concatenate([np.arange(n_lab), kept]).astype(np.int64),
                       run_id=np.concatenate([np.full(n_lab, -1), u.run_id[kept]]).astype(np.int64),
                       face_id=np.concatenate([np.full(n_lab, -1), u.face_id[kept]]).astype(np.int64),
                       class_identity=class_identity, class_cluster=class_cluster.astype(np.int64), report=report)


def _accept(st: _State, rows: np.ndarray) -> None:
    """Keep a cluster's faces, capped to the ``max_faces_per_cluster`` with the lowest p- (NaN last)."""
    u, p, cap = st.u, st.p, st.config.max_faces_per_cluster
    if cap is not None and len(rows) > cap:
        pk = np.where(np.isnan(p[rows]), np.inf, p[rows])
        order = np.lexsort((u.face_id[rows], u.run_id[rows], pk))
        st.dropped["cluster_capped"] += len(rows) - cap
        st.clusters["capped"] += 1
        rows = rows[order[:cap]]
    st.keep[rows] = True
    st.src[rows] = "pseudo"
