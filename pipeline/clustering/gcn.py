"""GCN-D (Yang et al., "Learning to Cluster Faces on an Affinity Graph", CVPR 2019).

A graph convolutional network reads one cluster proposal (its faces' features minus the proposal's
mean feature, and the kNN edges among its faces; as extra node inputs each face's cosine to that
mean, the share of its kNN neighbours inside the proposal and its best similarity outside it, which
tell an incomplete proposal from a whole identity; the head also sees log(proposal size)) and regresses the proposal's IoU and IoP with the
true identity it mostly contains. Trained on labeled faces, whose proposals' true IoU/IoP come from
the labels; used on unlabeled faces to rank proposals, after which :func:`deoverlap` gives every
face exactly one cluster label.

Proposals are batched into one block-diagonal graph held as a sparse CSR matrix
(``torch_geometric.utils.to_torch_csr_tensor``), row-normalised with self-loops, so GCN layers are
sparse-dense matrix products: memory linear in edges, no per-edge message tensors.
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from pipeline.progress import Progress
from pipeline.features import atomic_path, check_embeddings
from pipeline.clustering.knn import KnnGraph, build_knn
from pipeline.clustering.proposals import ProposalConfig, Proposals, generate_proposals

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "facecurate-gcnd-v1"
# node input: (feature - proposal mean) * sqrt(d), plus 3 scalars: the node's cosine to the proposal
# mean, the fraction of its kNN neighbours inside the proposal, its best similarity outside it
NODE_EXTRA = 3


@dataclass
class GcnConfig:
    """Everything that defines a trained GCN-D: model shape, graph settings and training settings."""

    in_dim: int = 128
    hidden: Sequence[int] = (128, 128, 64, 64)
    k: int = 30
    index: str = "auto"
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    epochs: int = 40
    batch_proposals: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.proposals, dict):
            self.proposals = ProposalConfig(**self.proposals)
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be positive layer widths, got {self.hidden}")
        if self.k < 1 or self.epochs < 1 or self.batch_proposals < 1:
            raise ValueError("k, epochs and batch_proposals must be >= 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["proposals"] = self.proposals.to_dict()
        return d


class GCND(nn.Module):
    """Stacked GCN layers, max+mean pooling per proposal, a 2-output head: logits of (IoU, IoP).

    Trained with binary cross-entropy on the soft targets (a sigmoid + MSE saturates and stalls)."""

    def __init__(self, in_dim: int, hidden: Sequence[int]):
        super().__init__()
        from torch_geometric.nn import GCNConv

        dims = [in_dim + NODE_EXTRA, *hidden]
        self.convs = nn.ModuleList(
            GCNConv(a, b, normalize=False, add_self_loops=False) for a, b in zip(dims[:-1], dims[1:])
        )
        self.acts = nn.ModuleList(nn.PReLU(b) for b in dims[1:])
        h = dims[-1]
        self.head = nn.Sequential(nn.Linear(2 * h + 1, h), nn.PReLU(h), nn.Linear(h, 2))

    def forward(self, x: torch.Tensor, adj: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        from torch_geometric.nn import global_max_pool, global_mean_pool

        for conv, act in zip(self.convs, self.acts):
            x = act(conv(x, adj))
        size = torch.bincount(batch, minlength=num_graphs).to(x.dtype).clamp(min=1)
        pooled = torch.cat(
            [global_max_pool(x, batch, size=num_graphs), global_mean_pool(x, batch, size=num_graphs),
             torch.log(size)[:, None]], dim=1
        )
        return self.head(pooled)  # logits of (IoU, IoP); sigmoid gives the estimates


@dataclass
class ProposalBatch:
    x: torch.Tensor  # (M, d + 3) features minus proposal centre (scaled), 3 scalars (NODE_EXTRA)
    adj: torch.Tensor  # (M, M) sparse CSR, row-normalised, with self-loops
    batch: torch.Tensor  # (M,) proposal index within the batch
    num_graphs: int


def make_batch(
    embeddings: np.ndarray, graph: KnnGraph, proposals: Proposals, ids: np.ndarray
) -> ProposalBatch:
    """One block-diagonal graph for proposals ``ids`` (vectorised: no per-proposal Python loop)."""
    from torch_geometric.utils import to_torch_csr_tensor

    ids = np.asarray(ids, dtype=np.int64)
    n = graph.n
    starts, ends = proposals.offsets[ids], proposals.offsets[ids + 1]
    sizes = ends - starts
    total = int(sizes.sum())
    # gather members of all chosen proposals
    local = np.repeat(np.arange(ids.size, dtype=np.int64), sizes)
    pos_in = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    members = proposals.members[np.repeat(starts, sizes) + pos_in]
    # edges inside each proposal: look every kNN neighbour up among the same proposal's members
    keys = local * n + members  # sorted: proposals in order, members sorted within each
    nbr = graph.indices[members]
    nkeys = local[:, None] * n + nbr
    loc = np.minimum(np.searchsorted(keys, nkeys), total - 1)
    valid = (keys[loc] == nkeys) & (nbr >= 0)
    src = np.broadcast_to(np.arange(total, dtype=np.int64)[:, None], nbr.shape)[valid]
    dst = loc[valid]
    w = np.clip(graph.sims[members][valid], 0.0, None).astype(np.float32)
    a = sp.csr_matrix((w, (src, dst)), shape=(total, total))
    a = a.maximum(a.T) + sp.identity(total, dtype=np.float32, format="csr")
    deg = np.asarray(a.sum(axis=1)).ravel()
    a = sp.csr_matrix(sp.diags((1.0 / deg).astype(np.float32)) @ a).tocoo()
    edge_index = torch.from_numpy(np.vstack([a.row, a.col]).astype(np.int64))
    with warnings.catch_warnings():  # "sparse CSR support is in beta" / "invariant checks disabled"
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*", category=UserWarning)
        adj = to_torch_csr_tensor(edge_index, torch.from_numpy(a.data.astype(np.float32)), size=(total, total))
    # features minus each proposal's mean feature
    feats = embeddings[members]
    cent = np.zeros((ids.size, feats.shape[1]), np.float32)
    first = np.cumsum(sizes) - sizes
    cent[:] = np.add.reduceat(feats, first, axis=0) / sizes[:, None]
    scale = np.float32(np.sqrt(feats.shape[1]))
    cent_unit = cent / np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    cos = np.einsum("ij,ij->i", feats, cent_unit[local])[:, None]
    has = nbr >= 0
    inside = valid.sum(1, keepdims=True) / np.maximum(has.sum(1, keepdims=True), 1)
    outside = np.where(has & ~valid, graph.sims[members], 0.0).max(1, keepdims=True).clip(0.0, 1.0)
    x = torch.from_numpy(np.hstack([(feats - cent[local]) * scale, cos, inside, outside]).astype(np.float32))
    return ProposalBatch(x, adj, torch.from_numpy(local), int(ids.size))


def proposal_targets(proposals: Proposals, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True (IoU, IoP) of every proposal with its majority identity; ``labels`` (N,) int codes."""
    labels = np.asarray(labels, dtype=np.int64)
    ncls = int(labels.max()) + 1
    class_size = np.bincount(labels, minlength=ncls)
    owner = proposals.owner()
    key = owner * ncls + labels[proposals.members]
    uniq, cnt = np.unique(key, return_counts=True)
    pid, cls = uniq // ncls, uniq % ncls
    order = np.lexsort((-cnt, pid))
    pid, cls, cnt = pid[order], cls[order], cnt[order]
    first = np.r_[True, pid[1:] != pid[:-1]]
    best_cnt = np.zeros(len(proposals), np.float64)
    best_cls = np.zeros(len(proposals), np.int64)
    best_cnt[pid[first]] = cnt[first]
    best_cls[pid[first]] = cls[first]
    size = proposals.sizes.astype(np.float64)
    iop = best_cnt / size
    iou = best_cnt / (size + class_size[best_cls] - best_cnt)
    return iou.astype(np.float32), iop.astype(np.float32)


@dataclass
class GcnModel:
    config: GcnConfig
    net: GCND

    def save(self, path: str | os.PathLike) -> Path:
        """Checkpoint with its config, written to a temp file then renamed."""
        with atomic_path(path) as tmp:
            torch.save({"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "state_dict": self.net.state_dict()}, tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GcnModel":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no GCN-D checkpoint at {path}")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a GCN-D checkpoint ({CHECKPOINT_FORMAT})")
        cfg = GcnConfig(**ckpt["config"])
        net = GCND(cfg.in_dim, cfg.hidden)
        net.load_state_dict(ckpt["state_dict"])
        net.eval()
        return cls(cfg, net)


def _id_batches(sizes: np.ndarray, max_nodes: int) -> list[np.ndarray]:
    """Consecutive proposal-id chunks of at most ``max_nodes`` faces (at least one proposal each)."""
    csum = np.cumsum(sizes)
    out, start = [], 0
    while start < sizes.size:
        base = csum[start - 1] if start else 0
        end = max(start + 1, int(np.searchsorted(csum, base + max_nodes, side="right")))
        out.append(np.arange(start, end, dtype=np.int64))
        start = end
    return out


def train_gcn(
    embeddings: np.ndarray,
    labels: np.ndarray,
    config: GcnConfig | None = None,
    *,
    graph: KnnGraph | None = None,
    progress: Progress | None = None,
) -> GcnModel:
    """Train GCN-D on labeled faces: proposals from their kNN graph, targets from their labels."""
    emb = check_embeddings(embeddings)
    labels = np.asarray(labels)
    if labels.shape != (emb.shape[0],):
        raise ValueError(f"labels must have shape ({emb.shape[0]},), got {labels.shape}")
    _, codes = np.unique(labels, return_inverse=True)
    cfg = config or GcnConfig(in_dim=emb.shape[1])
    if cfg.in_dim != emb.shape[1]:
        cfg.in_dim = emb.shape[1]
    torch.set_num_threads(max(1, min(cfg.threads, 2)))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    graph = graph or build_knn(emb, min(cfg.k, emb.shape[0] - 1), cfg.index)
    props = generate_proposals(graph, cfg.proposals, emb)
    if len(props) == 0:
        raise ValueError("no proposals on the training set: lower the proposal thresholds")
    iou, iop = proposal_targets(props, codes)
    target = torch.from_numpy(np.stack([iou, iop], axis=1))
    log.info("GCN-D training: %d faces, %d proposals, mean IoU %.3f IoP %.3f", emb.shape[0], len(props), iou.mean(), iop.mean())
    net = GCND(cfg.in_dim, cfg.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    net.train()
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        perm = rng.permutation(len(props))
        total_loss = 0.0
        for start in range(0, perm.size, cfg.batch_proposals):
            ids = np.sort(perm[start : start + cfg.batch_proposals])
            b = make_batch(emb, graph, props, ids)
            pred = net(b.x, b.adj, b.batch, b.num_graphs)
            loss = nn.functional.binary_cross_entropy_with_logits(pred, target[ids])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total_loss += loss.item() * ids.size
        sched.step()
        if progress:
            progress(epoch + 1, cfg.epochs, stage="train-gcn", loss=total_loss / perm.size)
        log.debug("epoch %d loss %.5f", epoch + 1, total_loss / perm.size)
    log.info("GCN-D trained in %.1f s", time.perf_counter() - t0)
    net.eval()
    return GcnModel(cfg, net)


@torch.no_grad()
def predict(
    model: GcnModel,
    embeddings: np.ndarray,
    graph: KnnGraph,
    proposals: Proposals,
    *,
    max_nodes: int = 200_000,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted (IoU, IoP) per proposal, float32 (P,) each."""
    emb = check_embeddings(embeddings)
    if emb.shape[1] != model.config.in_dim:
        raise ValueError(f"model expects {model.config.in_dim}-d features, got {emb.shape[1]}-d")
    torch.set_num_threads(max(1, min(model.config.threads, 2)))
    model.net.eval()
    out = np.zeros((len(proposals), 2), np.float32)
    chunks = _id_batches(proposals.sizes, max_nodes)
    for i, ids in enumerate(chunks):
        b = make_batch(emb, graph, proposals, ids)
        out[ids] = torch.sigmoid(model.net(b.x, b.adj, b.batch, b.num_graphs)).numpy()
        if progress:
            progress(i + 1, len(chunks), stage="gcn")
    return out[:, 0], out[:, 1]


def deoverlap(proposals: Proposals, scores: np.ndarray, n: int, min_score: float = 0.0) -> np.ndarray:
    """Labels (n,) int64: proposals taken best score first, each face assigned once (to the first,
    best proposal holding it); proposals scoring below ``min_score`` are ignored; every face left
    over is its own singleton cluster. Labels are 0..C-1."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(proposals),):
        raise ValueError(f"scores must have shape ({len(proposals)},), got {scores.shape}")
    if proposals.members.size and (proposals.members.min() < 0 or proposals.members.max() >= n):
        raise ValueError(f"proposal members must be face indices in [0, {n})")
    labels = np.full(n, -1, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] >= min_score]
    members, offsets = proposals.members, proposals.offsets
    nxt = 0
    for p in order:
        m = members[offsets[p] : offsets[p + 1]]
        free = m[labels[m] < 0]
        if free.size:
            labels[free] = nxt
            nxt += 1
    left = labels < 0
    labels[left] = nxt + np.arange(int(left.sum()), dtype=np.int64)
    return labels
