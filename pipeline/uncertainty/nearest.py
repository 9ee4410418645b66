"""Softmax regression over each face's nearest clusters: the scale path of :mod:`pipeline.uncertainty.softmax`.

The full softmax costs N x K x d per pass: at 1M faces in 100k clusters that is hours on a CPU (measured:
bench/results/uncertainty_scale.md). Here a face is scored against ``C`` classes only: its own cluster and
the ``C - 1`` clusters whose prototypes (L2-normalised means) are nearest to its own cluster's prototype
(one exact search among the K prototypes, K^2 d). A wrongly clustered face sits near another cluster, and that
cluster lies near its own; the far clusters the full softmax also sums over add mass to every face alike.

Training starts from the same prototype init and runs the same epochs, on (faces, C) logits instead of (B, K):
a batch is a set of whole clusters, and Adam's sparse variant moves only the candidate rows a batch touched.
The scores have the same names and meanings as :func:`pipeline.uncertainty.softmax.softmax_scores`' ones,
computed over the candidates.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.progress import Progress
from pipeline.uncertainty.softmax import SoftmaxConfig, SoftmaxModel, _check_inputs, _device


def candidates_for(cfg: SoftmaxConfig, n: int, k: int) -> int:
    """Classes per face: 0 (all K) or C >= 2. ``cfg.candidates`` -1 is auto: all while N x K is at most
    ``cfg.full_max_logits``, else ``cfg.auto_candidates``."""
    if cfg.candidates == -1:
        return 0 if n * k <= cfg.full_max_logits or k <= cfg.auto_candidates else cfg.auto_candidates
    return 0 if cfg.candidates == 0 or cfg.candidates >= k else cfg.candidates


def nearest_clusters(features, labels, num_classes: int, c: int, *, block: int = 8192) -> np.ndarray:
    """(K, C) int64: for each cluster itself (column 0) and its C - 1 nearest clusters by prototype cosine."""
    import faiss

    x, y = _check_inputs(features, labels)
    if not 2 <= c <= num_classes:
        raise ValueError(f"need 2 <= C <= K, got C={c}, K={num_classes}")
    proto = np.zeros((num_classes, x.shape[1]), np.float32)
    np.add.at(proto, y, x)
    proto /= np.maximum(np.linalg.norm(proto, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexFlatIP(proto.shape[1])
    index.add(proto)
    table = np.empty((num_classes, c), np.int64)
    own = np.arange(num_classes)
    for a in range(0, num_classes, block):
        _, nb = index.search(proto[a:a + block], c + 1)
        rows = own[a:a + block]
        nb = np.where(nb < 0, rows[:, None], nb)
        others = nb != rows[:, None]
        # the row's own cluster first, then its nearest others in order (a row lists itself at most once)
        order = np.argsort(~others, axis=1, kind="stable")[:, :c - 1]
        table[a:a + block, 0] = rows
        table[a:a + block, 1:] = np.take_along_axis(nb, order, 1)
    return table


def _groups(y: np.ndarray, k: int, budget: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Faces grouped by cluster into batches: each batch a run of clusters of similar size (sizes sorted, ties
    shuffled) whose padded (clusters x largest size) block holds at most ``budget`` faces; returns, per batch,
    (its cluster indices, a (clusters, largest size) array of face rows, -1 where padded), in random order."""
    order = np.argsort(y, kind="stable")
    sizes = np.bincount(y, minlength=k)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    present = np.flatnonzero(sizes)
    present = present[np.lexsort((rng.random(len(present)), sizes[present]))]
    out, a = [], 0
    while a < len(present):
        b = a + 1
        while b < len(present) and (b + 1 - a) * int(sizes[present[b]]) <= budget:
            b += 1
        cl = present[a:b]
        s_max = int(sizes[cl].max())
        pos = starts[cl][:, None] + np.arange(s_max)[None, :]
        valid = np.arange(s_max)[None, :] < sizes[cl][:, None]
        out.append((cl, np.where(valid, order[np.minimum(pos, len(order) - 1)], -1)))
        a = b
    return [out[i] for i in rng.permutation(len(out))]


def fit_nearest(features, labels, table: np.ndarray, config: SoftmaxConfig | None = None, *,
                progress: Progress | None = None) -> SoftmaxModel:
    """Softmax regression from features (N, d) to labels (N,) in [0, K), each face over ``table[label]``.

    A batch is a set of whole clusters (their faces share one candidate row), so each step gathers a
    cluster's candidate weights once, not once per face."""
    cfg = config or SoftmaxConfig()
    x_np, y_np = _check_inputs(features, labels)
    k, c = table.shape
    if y_np.min() < 0 or y_np.max() >= k:
        raise ValueError(f"labels must lie in [0, {k})")
    dev = _device(cfg.device)
    t0 = time.perf_counter()
    x = torch.from_numpy(np.concatenate([x_np, np.zeros((1, x_np.shape[1]), np.float32)])).to(dev)  # row -1: padding
    y = torch.from_numpy(y_np).to(dev)
    cand = torch.from_numpy(table).to(dev)
    w = torch.zeros(k, x.shape[1], device=dev)
    w.index_add_(0, y, x[:-1])
    weight = (F.normalize(w, dim=1) * cfg.init_scale).requires_grad_(True)
    bias = torch.zeros(k, 1, device=dev, requires_grad=True)
    history: list[dict] = []
    if cfg.epochs > 0:
        opt = torch.optim.SparseAdam([weight, bias], lr=cfg.lr)
        rng = np.random.default_rng(cfg.seed)
        budget = max(16, min(cfg.batch_size * 8, cfg.max_batch_logits // c))
        n = len(y_np)
        for epoch in range(cfg.epochs):
            total, correct = 0.0, 0
            for cl, rows in _groups(y_np, k, budget, rng):
                rows_t = torch.from_numpy(rows).to(dev)
                xb = x[rows_t]  # (clusters, size, d), padding rows zero
                cb = cand[torch.from_numpy(cl).to(dev)]  # (clusters, C)
                wc = F.embedding(cb, weight, sparse=True)
                bc = F.embedding(cb, bias, sparse=True)[..., 0]
                logits = (torch.bmm(xb, wc.transpose(1, 2)) + bc[:, None, :])[rows_t >= 0]  # (faces, C)
                loss = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(logits)
                correct += int((logits.detach().argmax(1) == 0).sum())
            rec = {"epoch": epoch + 1, "loss": total / n, "train_accuracy": correct / n, "candidates": c}
            history.append(rec)
            if progress:
                progress(epoch + 1, cfg.epochs, stage="softmax", **rec)
    return SoftmaxModel(weight=weight.detach(), bias=bias.detach()[:, 0], config=cfg, history=history,
                        seconds=time.perf_counter() - t0, candidates=cand)


def _logits(xb: torch.Tensor, cb: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *, sparse: bool = False):
    """(B, C) logits of a batch over its candidates; ``bias`` is (K, 1)."""
    wc = F.embedding(cb, weight, sparse=sparse)  # (B, C, d)
    bc = F.embedding(cb, bias, sparse=sparse)[..., 0]  # (B, C)
    return torch.einsum("bd,bcd->bc", xb, wc) + bc


@torch.no_grad()
def nearest_scores(model: SoftmaxModel, features, labels, *, own_logit=None) -> dict[str, np.ndarray]:
    """:func:`pipeline.uncertainty.softmax.softmax_scores` over each face's candidates (labels required: the
    candidates are its own cluster's row of the table)."""
    x_np = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    y_all = np.asarray(labels, dtype=np.int64)
    if x_np.ndim != 2 or x_np.shape[1] != model.weight.shape[1] or y_all.shape != (len(x_np),):
        raise ValueError(f"features (N, {model.weight.shape[1]}) and labels (N,) are required")
    cand, dev = model.candidates, model.weight.device
    n = len(x_np)
    out = {"entropy": np.empty(n, np.float32), "max_logit": np.empty(n, np.float32), "margin": np.empty(n, np.float32),
           "predicted": np.empty(n, np.int64), "assigned_margin": np.empty(n, np.float32),
           "own_logit": np.empty(n, np.float32)}
    ov_all = None if own_logit is None else np.asarray(own_logit, dtype=np.float32)
    bs = max(16, model.config.max_batch_logits // cand.shape[1] // 4)
    for i in range(0, n, bs):
        sl = slice(i, i + bs)
        cb = cand[torch.from_numpy(y_all[sl]).to(dev)]
        logits = _logits(torch.from_numpy(x_np[sl]).to(dev), cb, model.weight, model.bias[:, None])
        if ov_all is not None:
            ov = torch.from_numpy(ov_all[sl]).to(dev)
            logits[:, 0] = torch.where(torch.isfinite(ov), ov, logits[:, 0])
        lse = torch.logsumexp(logits, dim=1)
        p = torch.exp(logits - lse[:, None])
        top_l, top_i = logits.topk(2, dim=1)
        top_p = torch.exp(top_l - lse[:, None])
        p_own = p[:, 0]
        other = torch.where(top_i[:, 0] == 0, top_p[:, 1], top_p[:, 0])
        out["entropy"][sl] = (lse - (p * logits).sum(1)).clamp_min(0).cpu().numpy()
        out["max_logit"][sl] = top_l[:, 0].cpu().numpy()
        out["margin"][sl] = (top_p[:, 0] - top_p[:, 1]).clamp(0, 1).cpu().numpy()
        out["predicted"][sl] = cb.gather(1, top_i[:, :1])[:, 0].cpu().numpy()
        out["assigned_margin"][sl] = (p_own - other).cpu().numpy()
        out["own_logit"][sl] = logits[:, 0].cpu().numpy()
    return out
