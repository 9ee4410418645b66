"""Cluster proposals for GCN-D (Yang et al., CVPR 2019, Sec. 3.1 "super-vertices").

Level 1: keep the kNN edges with similarity >= t, take connected components; a component with more
than ``max_size`` faces is split again at ``t + step`` (and so on), so the proposals of one threshold
are a partition of the faces into small, dense groups. Several thresholds give overlapping proposals.

Level 2 (``levels=2``): each level-1 group (2+ faces) of one threshold becomes a super-vertex (its mean
feature); the same procedure on the super-vertices' kNN graph merges groups into larger
proposals, capped at ``level2_max_size`` faces.

Proposals are stored flat: ``members`` (concatenated, sorted within each proposal), ``offsets``
(P+1), ``level`` and ``threshold`` per proposal. Singletons are never proposals.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from pipeline.progress import Progress
from pipeline.features import l2_normalize
from pipeline.clustering.knn import KnnGraph, build_knn



@dataclass
class ProposalConfig:
    thresholds: Sequence[float] = (0.35, 0.45, 0.55)  # chosen on LFW (bench/clustering_quality.py)
    max_size: int = 300
    step: float = 0.05
    min_size: int = 2
    levels: int = 2
    level2_k: int = 10
    # level-2 proposals may hold more faces, so that one identity with hundreds of photos (George W Bush
    # has 530 in LFW) can still be one proposal
    level2_max_size: int = 1200

    def __post_init__(self) -> None:
        self.thresholds = tuple(float(t) for t in self.thresholds)
        if not self.thresholds or any(not -1.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds must be cosine similarities in [-1, 1], got {self.thresholds}")
        if self.max_size < 2 or self.min_size < 2 or self.min_size > self.max_size:
            raise ValueError(f"need 2 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        if self.step <= 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        if self.level2_max_size < self.max_size:
            raise ValueError(f"level2_max_size must be >= max_size, got {self.level2_max_size} < {self.max_size}")
        if self.levels not in (1, 2):
            raise ValueError(f"levels must be 1 or 2, got {self.levels}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["thresholds"] = list(self.thresholds)
        return d


@dataclass
class Proposals:
    members: np.ndarray  # (M,) int64
    offsets: np.ndarray  # (P+1,) int64
    level: np.ndarray = field(default=None)  # (P,) int64
    threshold: np.ndarray = field(default=None)  # (P,) float32

    def __post_init__(self) -> None:
        self.members = np.asarray(self.members, dtype=np.int64)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        p = self.offsets.shape[0] - 1
        if p < 0 or self.offsets[0] != 0 or self.offsets[-1] != self.members.shape[0] or np.any(np.diff(self.offsets) < 0):
            raise ValueError("offsets must start at 0, end at len(members) and not decrease")
        self.level = np.ones(p, np.int64) if self.level is None else np.asarray(self.level, np.int64)
        self.threshold = (
            np.zeros(p, np.float32) if self.threshold is None else np.asarray(self.threshold, np.float32)
        )

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.members[self.offsets[i] : self.offsets[i + 1]]

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def owner(self) -> np.ndarray:
        """(M,) proposal id of every entry of ``members``."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.sizes)

    @classmethod
    def from_groups(cls, groups: list[np.ndarray], level=None, threshold=None) -> "Proposals":
        sizes = np.array([g.size for g in groups], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        members = np.concatenate(groups).astype(np.int64) if groups else np.zeros(0, np.int64)
        return cls(members, offsets, level, threshold)


def _groups(labels: np.ndarray, nodes: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels)
    return np.split(nodes[order], np.cumsum(counts)[:-1])


def split_components(
    adj: sp.csr_matrix,
    threshold: float,
    max_size: int,
    step: float,
    weights: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Partition the nodes of a similarity graph into connected components at ``threshold``,
    splitting every component heavier than ``max_size`` again at a higher threshold.

    ``weights`` (default 1 per node) is what a component's size counts. Components that cannot be
    split below ``max_size`` even at similarity 1 are kept whole. Returns sorted node arrays.
    """
    n = adj.shape[0]
    w = np.ones(n, np.int64) if weights is None else np.asarray(weights, np.int64)
    adj = sp.csr_matrix(adj)
    out: list[np.ndarray] = []
    stack: list[tuple[np.ndarray, float]] = [(np.arange(n, dtype=np.int64), float(threshold))]
    while stack:
        nodes, t = stack.pop()
        sub = adj if nodes.size == n else adj[nodes][:, nodes]
        sub = _keep_at_least(sub, t)
        _, lab = connected_components(sub, directed=True, connection="weak")
        size = np.bincount(lab, weights=w[nodes]).astype(np.int64)
        big = size > max_size
        if not big.any():
            out.extend(np.sort(g) for g in _groups(lab, nodes))
            continue
        for c, g in enumerate(_groups(lab, nodes)):
            if big[c] and t + step <= 1.0 + 1e-6 and g.size > 1:
                stack.append((g, t + step))
            else:
                out.append(np.sort(g))
    return out


def generate_proposals(
    graph: KnnGraph,
    config: ProposalConfig | None = None,
    embeddings: np.ndarray | None = None,
    progress: Progress | None = None,
) -> Proposals:
    """Multi-threshold, optionally two-level proposals from a kNN graph (see module doc).

    ``embeddings`` are needed for level 2 (super-vertex features).
    """
    cfg = config or ProposalConfig()
    if cfg.levels == 2 and embeddings is None:
        raise ValueError("level-2 proposals need the embeddings")
    if embeddings is not None and np.asarray(embeddings).shape[0] != graph.n:
        raise ValueError(f"embeddings have {np.asarray(embeddings).shape[0]} rows, graph has {graph.n}")
    adj = graph.to_csr()
    groups: list[np.ndarray] = []
    levels: list[int] = []
    ths: list[float] = []
    seen: set[bytes] = set()

    def add(g: np.ndarray, level: int, t: float) -> None:
        if g.size < cfg.min_size:
            return
        key = g.tobytes()
        if key in seen:
            return
        seen.add(key)
        groups.append(g)
        levels.append(level)
        ths.append(t)

    total = len(cfg.thresholds) * cfg.levels
    done = 0
    for t in cfg.thresholds:
        parts = split_components(adj, t, cfg.max_size, cfg.step)
        for g in parts:
            add(g, 1, t)
        done += 1
        if progress:
            progress(done, total, stage="proposals")
        parts = [g for g in parts if g.size >= 2]  # level 2 joins groups; singletons stay out
        if cfg.levels == 2 and len(parts) > 1:
            emb = np.asarray(embeddings, dtype=np.float32)
            sizes = np.array([g.size for g in parts], np.int64)
            owner = np.repeat(np.arange(len(parts)), sizes)
            flat = np.concatenate(parts)
            cent = np.zeros((len(parts), emb.shape[1]), np.float32)
            _segment_sum(cent, owner, emb[flat])
            cent = l2_normalize(cent)
            sg = build_knn(cent, min(cfg.level2_k, len(parts) - 1), index="auto")
            supers = split_components(sg.to_csr(), t, cfg.level2_max_size, cfg.step, weights=sizes)
            for s in supers:
                if s.size > 1:
                    add(np.sort(np.concatenate([parts[i] for i in s])), 2, t)
            done += 1
            if progress:
                progress(done, total, stage="proposals")
    return Proposals.from_groups(groups, levels, ths)


def _keep_at_least(m: sp.csr_matrix, t: float) -> sp.csr_matrix:
    """The entries of ``m`` with value >= t (same shape, CSR)."""
    keep = m.data >= t
    indptr = np.concatenate([[0], np.cumsum(keep)])[m.indptr]
    return sp.csr_matrix((m.data[keep], m.indices[keep], indptr), shape=m.shape)


def _segment_sum(out: np.ndarray, owner: np.ndarray, values: np.ndarray) -> None:
    """out[owner[i]] += values[i] (owner sorted), fast for many segments."""
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    out[owner[starts]] += np.add.reduceat(values, starts, axis=0)
