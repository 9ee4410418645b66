"""Softmax regression on cluster assignments (paper Sec. 3.3, step 1) and the per-face scores it gives.

A linear multinomial logistic classifier from face features (N, d) to the cluster assignments (K clusters),
trained with minibatch Adam in PyTorch (CPU or GPU), so it scales to 100k clusters and 1M faces: the weight matrix
is (K, d), a batch touches (B, K) logits, and the batch size is capped so that a batch's logits stay under
``max_batch_logits`` elements. Weights start at the L2-normalised cluster means times ``init_scale`` (a cosine
nearest-class-mean classifier) and are refined for ``epochs`` passes; ``epochs=0`` keeps the prototype classifier.

:func:`softmax_scores` gives per face ``entropy`` (nats), ``max_logit``, ``margin`` = top-1 minus top-2 softmax
probability (the paper's class margin, in [0, 1]) and, with labels, ``assigned_margin`` = probability of the face's
own cluster minus the largest other probability (in [-1, 1]; negative when the classifier prefers another cluster).
Cross-fitting (scoring each face with a classifier fitted on the other folds) lives in
:func:`pipeline.uncertainty.core.clustering_uncertainty`.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.features import check_embeddings
from pipeline.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SoftmaxConfig:
    epochs: int = 2
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    init: str = "prototype"  # 'prototype' (scaled cluster means) | 'zeros'
    init_scale: float = 16.0
    seed: int = 0
    device: str = "auto"  # 'auto' | 'cpu' | 'cuda' | 'cuda:1'
    max_batch_logits: int = 2**25  # cap on B * K per training / scoring batch
    unseen_quantile: float | None = None  # cross-fit: own logit for unseen clusters (None: left as trained)
    cross_fit: int = 5  # >= 2: score each face with a classifier fitted on the other folds (no memorising)
    stratify: bool = True  # cross-fit folds stratified by cluster: no cluster of >= 2 faces is unseen by a fold
    num_threads: int = 0  # CPU threads for torch (0: leave as is)
    # Classes each face is scored against: 0 all K; C >= 2 its own cluster and the C - 1 nearest clusters
    # (pipeline.uncertainty.nearest, for scale); -1 auto: all while N x K <= full_max_logits, else auto_candidates.
    # The bound keeps every set the calibrator was chosen and tested on (LFW, glint: N x K <= 1e8) on the full
    # softmax; bench/uncertainty_scale.py compares the two paths and times them.
    candidates: int = -1
    full_max_logits: int = 250_000_000
    auto_candidates: int = 64

    def __post_init__(self):
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.init_scale <= 0:
            raise ValueError("epochs >= 0, batch_size >= 1, lr > 0 and init_scale > 0 are required")
        if self.init not in ("prototype", "zeros"):
            raise ValueError("init must be 'prototype' or 'zeros'")
        if self.unseen_quantile is not None and not 0 <= self.unseen_quantile <= 1:
            raise ValueError("unseen_quantile must be None or lie in [0, 1]")
        if self.candidates < -1 or self.candidates == 1 or self.auto_candidates < 2:
            raise ValueError("candidates must be -1 (auto), 0 (all) or >= 2; auto_candidates >= 2")


@dataclass
class SoftmaxModel:
    weight: torch.Tensor  # (K, d)
    bias: torch.Tensor  # (K,)
    config: SoftmaxConfig
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    candidates: torch.Tensor | None = None  # (K, C) classes per cluster (pipeline.uncertainty.nearest), None: all

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _check_inputs(features, labels) -> tuple[np.ndarray, np.ndarray]:
    x = check_embeddings(features, name="features", unit_norm=False)
    y = np.asarray(labels)
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer cluster ids, got {y.dtype}")
    return x, y.astype(np.int64)


def _batch(cfg: SoftmaxConfig, k: int, requested: int) -> int:
    return int(max(16, min(requested, cfg.max_batch_logits // max(k, 1))))


def fit_softmax(
    features, labels, config: SoftmaxConfig | None = None, *, num_classes: int | None = None,
    progress: Progress | None = None,
) -> SoftmaxModel:
    """Softmax regression from features (N, d) to labels (N,) int in ``[0, K)``; see the module docstring.

    ``num_classes`` (default ``labels.max() + 1``) fixes K; classes with no training face start at zero weight.
    """
    cfg = config or SoftmaxConfig()
    x_np, y_np = _check_inputs(features, labels)
    if y_np.min() < 0:
        raise ValueError("labels must be >= 0 here (drop unclustered faces first)")
    k = int(y_np.max()) + 1 if num_classes is None else int(num_classes)
    if k <= int(y_np.max()):
        raise ValueError(f"num_classes={k} but labels go up to {int(y_np.max())}")
    if k < 2:
        raise ValueError("softmax regression needs at least two clusters")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dev = _device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    x = torch.from_numpy(x_np).to(dev)
    y = torch.from_numpy(y_np).to(dev)
    n, d = x.shape
    if cfg.init == "prototype":
        w = torch.zeros(k, d, device=dev)
        w.index_add_(0, y, x)
        w = F.normalize(w, dim=1) * cfg.init_scale
    else:
        w = torch.zeros(k, d, device=dev)
    weight = w.clone().requires_grad_(True)
    bias = torch.zeros(k, device=dev, requires_grad=True)
    history: list[dict] = []
    if cfg.epochs > 0:
        opt = torch.optim.Adam([weight, bias], lr=cfg.lr, weight_decay=cfg.weight_decay)
        bs = _batch(cfg, k, cfg.batch_size)
        steps = math.ceil(n / bs)
        for epoch in range(cfg.epochs):
            perm = torch.randperm(n, generator=gen).to(dev)
            total, correct = 0.0, 0
            for step in range(steps):
                idx = perm[step * bs : (step + 1) * bs]
                logits = F.linear(x[idx], weight, bias)
                loss = F.cross_entropy(logits, y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                correct += int((logits.detach().argmax(1) == y[idx]).sum())
            rec = {"epoch": epoch + 1, "loss": total / n, "train_accuracy": correct / n}
            history.append(rec)
            log.debug("softmax epoch %d: %s", epoch + 1, rec)
            if progress:
                progress(epoch + 1, cfg.epochs, stage="softmax", **rec)
    return SoftmaxModel(weight=weight.detach(), bias=bias.detach(), config=cfg, history=history,
                        seconds=time.perf_counter() - t0)


@torch.no_grad()
def softmax_scores(model: SoftmaxModel, features, labels=None, *, own_logit=None) -> dict[str, np.ndarray]:
    """Per-face ``entropy``, ``max_logit``, ``margin``, ``predicted``; with labels also ``assigned_margin`` and
    ``own_logit`` (the logit of the face's own cluster).

    ``own_logit`` (N,) float, optional: where finite, replaces the logit of the face's own cluster before the
    softmax (used by cross-fitting for clusters the fold's classifier never saw).
    """
    x_np = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    if x_np.ndim != 2 or x_np.shape[1] != model.weight.shape[1]:
        raise ValueError(f"features must be (N, {model.weight.shape[1]}), got {x_np.shape}")
    n, k = x_np.shape[0], model.num_classes
    if own_logit is not None and labels is None:
        raise ValueError("own_logit needs labels")
    dev = model.weight.device
    bs = _batch(model.config, k, 8192)
    ent = np.empty(n, np.float32)
    mlog = np.empty(n, np.float32)
    marg = np.empty(n, np.float32)
    pred = np.empty(n, np.int64)
    amarg = np.empty(n, np.float32) if labels is not None else None
    own = np.empty(n, np.float32) if labels is not None else None
    y_all = None if labels is None else np.asarray(labels, dtype=np.int64)
    ov_all = None if own_logit is None else np.asarray(own_logit, dtype=np.float32)
    for i in range(0, n, bs):
        xb = torch.from_numpy(x_np[i : i + bs]).to(dev)
        logits = F.linear(xb, model.weight, model.bias)
        if y_all is not None:
            yb = torch.from_numpy(y_all[i : i + bs]).to(dev)
            if ov_all is not None:
                ov = torch.from_numpy(ov_all[i : i + bs]).to(dev)
                cur = logits.gather(1, yb[:, None])[:, 0]
                logits.scatter_(1, yb[:, None], torch.where(torch.isfinite(ov), ov, cur)[:, None])
        lse = torch.logsumexp(logits, dim=1)
        p = torch.exp(logits - lse[:, None])
        ent[i : i + bs] = (lse - (p * logits).sum(1)).cpu().numpy()
        top_l, top_i = logits.topk(2, dim=1)
        mlog[i : i + bs] = top_l[:, 0].cpu().numpy()
        pred[i : i + bs] = top_i[:, 0].cpu().numpy()
        top_p = torch.exp(top_l - lse[:, None])
        marg[i : i + bs] = (top_p[:, 0] - top_p[:, 1]).cpu().numpy()
        if y_all is not None:
            own_l = logits.gather(1, yb[:, None])[:, 0]
            p_own = torch.exp(own_l - lse)
            other = torch.where(top_i[:, 0] == yb, top_p[:, 1], top_p[:, 0])
            amarg[i : i + bs] = (p_own - other).cpu().numpy()
            own[i : i + bs] = own_l.cpu().numpy()
    out = {"entropy": np.maximum(ent, 0.0), "max_logit": mlog, "margin": np.clip(marg, 0.0, 1.0), "predicted": pred}
    if amarg is not None:
        out["assigned_margin"] = amarg
        out["own_logit"] = own
    return out
