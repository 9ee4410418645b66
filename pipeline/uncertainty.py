"""Clustering uncertainty p- (paper Sec. 3.3): how likely each face is to be wrongly clustered.

1. **Softmax regression** (:func:`fit_softmax`): a linear multinomial logistic classifier from face features
   (N, d) to the cluster assignments (K clusters), trained with minibatch Adam in PyTorch (CPU or GPU), so it
   scales to 100k clusters and 1M faces: the weight matrix is (K, d), a batch touches (B, K) logits, and the
   batch size is capped so that a batch's logits stay under ``max_batch_logits`` elements. Weights start at the
   L2-normalised cluster means times ``init_scale`` (a cosine nearest-class-mean classifier, already a good
   solution) and are refined for ``epochs`` passes; ``epochs=0`` keeps the prototype classifier.
   **Cross-fitting** (``cross_fit=5``, the default): the faces are split into 5 random folds and each face is
   scored by a classifier fitted on the other 4. Scored in-sample (``cross_fit=0``, the literal reading of the
   paper) a linear classifier with one class per cluster memorises its training faces -- on LFW (13k faces, 6k
   clusters) it reaches 100 % training accuracy and its margins find wrong faces no better than chance
   (bench/results/uncertainty.md). A face whose cluster has no member in the other folds (a singleton) is scored
   against an unseen class; see ``SoftmaxConfig.unseen_quantile``.
2. **Per-face scores** (:func:`softmax_scores`, chunked over faces so the (N, K) matrix never exists at once):
   ``entropy`` of the softmax distribution (nats), ``max_logit`` (largest logit), ``margin`` = top-1 minus top-2
   *softmax probability* (in [0, 1]; the paper's class margin), and ``assigned_margin`` = probability of the
   face's own cluster minus the largest other probability (in [-1, 1]; negative when the classifier puts the face
   in another cluster).
3. **p-** (:func:`fit_p_minus`) is computed from a margin ``u`` in [0, 1]: by default
   ``u = (1 + assigned_margin) / 2`` (``PMinusConfig.margin_kind='assigned'``: 0 = confidently another cluster,
   0.5 = undecided, 1 = confidently its own), or the paper's top-2 ``margin`` (``margin_kind='top2'``). The
   assigned margin is the default because with cross-fitting the top-2 margin cannot see that the classifier
   prefers *another* cluster -- the main symptom of a split -- and it ranks wrong faces better on real data
   (bench/results/uncertainty.md). Otsu's threshold splits the distribution of ``u`` into a low mode (likely
   wrongly clustered) and a high mode; a two-parameter Weibull ``W_wrong`` (location 0: ``u`` is bounded below
   by 0) is fitted by maximum likelihood to the values below the threshold, and

       p-(u) = W_wrong.sf(u) = P(U_wrong > u) = exp(-(u / scale) ** shape)

   i.e. the Weibull *survival function* of the low (wrong) mode at the face's margin: the fraction of the
   wrongly-clustered population whose margin is at least as large as this face's. It is 1 at margin 0, falls
   monotonically, and is ~0 once the margin is beyond everything the wrong mode produces -- the extreme value
   reading (as in meta-recognition / W-SVM) of "this margin could still have come from the wrong mode". The CDF
   would run the wrong way (near 0 for the least confident faces), which is why it is the survival function.
   Because p- is monotone in the margin, ranking faces by p- is ranking them by margin; the Weibull makes it a
   probability that the re-training loss weight ``(1 - p-) ** gamma`` can use.

Degenerate input (fewer than ``min_faces`` faces with a cluster, fewer than two clusters, fewer than
``min_wrong_faces`` margins in the low mode -- e.g. clean, well separated clusters --, or constant margins) is
reported in ``UncertaintyResult.degenerate`` and p- is NaN there (entropy / max-logit / margins are still given)
-- never a silent guess. Faces with a negative cluster label (unclustered / noise) are left out of training and get
NaN scores.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .progress import Progress
from .evt import EvtError, OtsuResult, Weibull, fit_weibull, otsu
from .features import check_embeddings
from .overlap import score_histogram

log = logging.getLogger(__name__)

__all__ = [
    "SoftmaxConfig",
    "SoftmaxModel",
    "fit_softmax",
    "softmax_scores",
    "PMinusConfig",
    "PMinusFit",
    "fit_p_minus",
    "UncertaintyResult",
    "clustering_uncertainty",
    "wrongly_clustered",
]


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
    num_threads: int = 0  # CPU threads for torch (0: leave as is)

    def __post_init__(self):
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.init_scale <= 0:
            raise ValueError("epochs >= 0, batch_size >= 1, lr > 0 and init_scale > 0 are required")
        if self.init not in ("prototype", "zeros"):
            raise ValueError("init must be 'prototype' or 'zeros'")
        if self.unseen_quantile is not None and not 0 <= self.unseen_quantile <= 1:
            raise ValueError("unseen_quantile must be None or lie in [0, 1]")


@dataclass
class SoftmaxModel:
    weight: torch.Tensor  # (K, d)
    bias: torch.Tensor  # (K,)
    config: SoftmaxConfig
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

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


@dataclass(frozen=True)
class PMinusConfig:
    bins: int = 256
    min_faces: int = 50
    min_wrong_faces: int = 10
    floor: float = 1e-6  # margins are clipped to at least this before the Weibull fit (support x > 0)
    confidence: float = 0.95
    hist_bins: int = 60
    margin_kind: str = "assigned"  # 'assigned': (1 + assigned_margin) / 2; 'top2': the paper's top-1 - top-2

    def __post_init__(self):
        if self.margin_kind not in ("assigned", "top2"):
            raise ValueError("margin_kind must be 'assigned' or 'top2'")


MARGIN_LABELS = {
    "top2": "class margin (top-1 minus top-2 softmax probability)",
    "assigned": "(1 + assigned-cluster margin) / 2 (cross-fitted softmax)",
}


def p_margin(scores: dict[str, np.ndarray], kind: str) -> np.ndarray:
    """The margin p- is computed from, in [0, 1]: ``top2`` margin, or ``(1 + assigned_margin) / 2``."""
    if kind == "top2":
        return np.clip(scores["margin"], 0.0, 1.0).astype(np.float32)
    return np.clip((1.0 + scores["assigned_margin"]) / 2.0, 0.0, 1.0).astype(np.float32)


@dataclass
class PMinusFit:
    weibull: Weibull | None
    otsu: OtsuResult | None
    wrong_fraction: float
    degenerate: str | None = None
    message: str = ""

    def p_minus(self, margin) -> np.ndarray:
        """p-(m) = W_wrong.sf(max(m, 0)) as float32; NaN everywhere when the fit is degenerate."""
        m = np.asarray(margin, dtype=np.float64)
        if self.weibull is None:
            return np.full(m.shape, np.nan, dtype=np.float32)
        out = self.weibull.sf(np.maximum(m, 0.0))
        return np.where(np.isfinite(m), out, np.nan).astype(np.float32)


def fit_p_minus(margin, config: PMinusConfig | None = None) -> PMinusFit:
    """Otsu split of the margins, Weibull (location 0) on the lower mode; see the module docstring."""
    cfg = config or PMinusConfig()
    m = np.asarray(margin)
    if m.ndim != 1:
        raise ValueError(f"margin must be 1-D, got shape {m.shape}")
    m = m.astype(np.float64)
    if not np.isfinite(m).all():
        raise ValueError("margin contains NaN or infinite values")
    if m.size < cfg.min_faces:
        return PMinusFit(None, None, float("nan"), "too_few",
                         f"{m.size} margins; at least {cfg.min_faces} are needed")
    if not m.max() > m.min():
        return PMinusFit(None, None, float("nan"), "constant", f"every margin equals {m[0]:.6g}")
    ot = otsu(m, bins=cfg.bins)
    low = m[m < ot.threshold]
    if low.size < cfg.min_wrong_faces:
        return PMinusFit(None, ot, low.size / m.size, "one_mode",
                         f"only {low.size} margins below Otsu's threshold {ot.threshold:.4g}")
    try:
        wb = fit_weibull(np.maximum(low, cfg.floor))
    except EvtError as exc:
        return PMinusFit(None, ot, low.size / m.size, "one_mode", f"Weibull fit of the low mode failed: {exc}")
    return PMinusFit(wb, ot, low.size / m.size, None,
                     f"p- = exp(-(margin / {wb.scale:.4g}) ** {wb.shape:.4g}) (Weibull sf of the low margin mode)")


@dataclass
class UncertaintyResult:
    p_minus: np.ndarray  # (N,) float32
    entropy: np.ndarray  # (N,) float32
    max_logit: np.ndarray  # (N,) float32
    margin: np.ndarray  # (N,) float32
    assigned_margin: np.ndarray  # (N,) float32
    predicted: np.ndarray  # (N,) int64, the classifier's top-1 cluster label (original ids), -1 if unclustered
    fit: PMinusFit
    model: SoftmaxModel | None
    report: dict[str, Any]
    degenerate: str | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-face arrays the web app reads, aligned with the input rows."""
        return {
            "p_minus": self.p_minus,
            "entropy": self.entropy,
            "max_logit": self.max_logit,
            "margin": self.margin,
            "assigned_margin": self.assigned_margin,
            "predicted_cluster": self.predicted,
        }


def clustering_uncertainty(
    features,
    cluster_labels,
    softmax: SoftmaxConfig | None = None,
    p_minus: PMinusConfig | None = None,
    *,
    progress: Progress | None = None,
) -> UncertaintyResult:
    """Softmax regression on the cluster assignments, per-face entropy / max-logit / margin, and p-.

    ``features`` (N, d) L2-normalised float; ``cluster_labels`` (N,) int (negative = unclustered, scored NaN).
    """
    scfg = softmax or SoftmaxConfig()
    pcfg = p_minus or PMinusConfig()
    x = check_embeddings(features, name="features")
    lab = np.asarray(cluster_labels)
    if lab.shape != (x.shape[0],) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"cluster_labels must be an integer array of shape ({x.shape[0]},), got "
                         f"{lab.dtype} {lab.shape}")
    lab = lab.astype(np.int64)
    n = x.shape[0]
    keep = lab >= 0
    nan = np.full(n, np.nan, dtype=np.float32)
    ids, y = np.unique(lab[keep], return_inverse=True)
    base_report = {"kind": "uncertainty", "n": int(n), "clustered": int(keep.sum()), "clusters": int(len(ids)),
                   "softmax": asdict(scfg), "p_minus_config": asdict(pcfg),
                   "labels": {"x": MARGIN_LABELS[pcfg.margin_kind], "low": "wrong"}}

    def degenerate(reason: str, message: str, model=None, scores=None, fit=None):
        rep = {**base_report, "degenerate": reason, "message": message, "histogram": None, "curves": None,
               "thresholds": {}}
        full = {k: nan.copy() for k in ("entropy", "max_logit", "margin", "assigned_margin")}
        pred = np.full(n, -1, dtype=np.int64)
        if scores is not None:
            for k2 in full:
                full[k2][keep] = scores[k2]
            pred[keep] = ids[scores["predicted"]]
            rep["histogram"] = score_histogram(scores["p_margin"], pcfg.hist_bins, 0.0, 1.0)
        return UncertaintyResult(p_minus=nan.copy(), predicted=pred, fit=fit or PMinusFit(None, None, float("nan"),
                                 reason, message), model=model, report=rep, degenerate=reason, **full)

    if keep.sum() < pcfg.min_faces:
        return degenerate("too_few", f"{int(keep.sum())} clustered faces; at least {pcfg.min_faces} are needed")
    if len(ids) < 2:
        return degenerate("one_cluster", "every clustered face is in one cluster; there is nothing to be unsure of")
    xk = x[keep]
    if scfg.cross_fit >= 2:
        folds = np.random.default_rng(scfg.seed).integers(0, scfg.cross_fit, size=len(y))
        parts = []
        for f in range(scfg.cross_fit):
            tr, te = folds != f, folds == f
            cb = None
            if progress is not None:
                def cb(cur, tot, _f=f, **info):
                    progress(_f * tot + cur, scfg.cross_fit * tot, fold=_f + 1, **info)
            m_f = fit_softmax(xk[tr], y[tr], scfg, num_classes=len(ids), progress=cb)
            # A face whose cluster has no member in the training folds (e.g. a singleton) cannot be scored against
            # its own cluster. By default its own-cluster logit stays what the fold's classifier gives an unseen
            # cluster (about 0), so such faces are suspect, ranked by how close they are to another cluster. With
            # ``unseen_quantile`` q it is set to the q-quantile of the own-cluster logits of the faces that can be
            # scored ("as close to its cluster as a typical face"): they then look wrong only when another cluster
            # is closer than that.
            seen = np.zeros(len(ids), bool)
            seen[y[tr]] = True
            te_idx = np.flatnonzero(te)
            unseen = ~seen[y[te_idx]]
            sc = softmax_scores(m_f, xk[te_idx], y[te_idx])
            if scfg.unseen_quantile is not None and unseen.any() and (~unseen).any():
                tau = float(np.quantile(sc["own_logit"][~unseen], scfg.unseen_quantile))
                ov = np.full(unseen.sum(), tau, dtype=np.float32)
                sc_u = softmax_scores(m_f, xk[te_idx[unseen]], y[te_idx[unseen]], own_logit=ov)
                for key in sc:
                    sc[key][unseen] = sc_u[key]
            parts.append((te, sc, m_f))
        scores = {k: np.empty(len(y), dtype=v.dtype) for k, v in parts[0][1].items()}
        for te, sc, _ in parts:
            for k, v in sc.items():
                scores[k][te] = v
        model = parts[-1][2]
        model.seconds = sum(p[2].seconds for p in parts)
    else:
        model = fit_softmax(xk, y, scfg, num_classes=len(ids), progress=progress)
        scores = softmax_scores(model, xk, y)
    scores["p_margin"] = p_margin(scores, pcfg.margin_kind)
    fit = fit_p_minus(scores["p_margin"], pcfg)
    if fit.degenerate:
        return degenerate(fit.degenerate, fit.message, model, scores, fit)
    full = {k: nan.copy() for k in ("entropy", "max_logit", "margin", "assigned_margin")}
    for k in full:
        full[k][keep] = scores[k]
    pm = nan.copy()
    pm[keep] = fit.p_minus(scores["p_margin"])
    pred = np.full(n, -1, dtype=np.int64)
    pred[keep] = ids[scores["predicted"]]
    grid = np.linspace(0.0, 1.0, 400)
    wb = fit.weibull
    report = {
        **base_report,
        "degenerate": None,
        "message": fit.message,
        "histogram": score_histogram(scores["p_margin"], pcfg.hist_bins, 0.0, 1.0),
        "curves": {"x": grid.tolist(), "wrong": (fit.wrong_fraction * wb.pdf(np.maximum(grid, 1e-12))).tolist()},
        "thresholds": {"otsu": fit.otsu.threshold, "wrong_upper": float(wb.ppf(pcfg.confidence))},
        "weibull": wb.to_dict(),
        "wrong_fraction": fit.wrong_fraction,
        "otsu": asdict(fit.otsu),
        "p_minus_quantiles": {str(q): float(np.quantile(pm[keep], q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
        "train_history": model.history,
        "softmax_seconds": model.seconds,
        "train_accuracy": float(np.mean(scores["predicted"] == y)),
        "counts": {"clusters": int(len(ids)), "faces": int(keep.sum()),
                   "below Otsu": int(np.sum(scores["p_margin"] < fit.otsu.threshold))},
    }
    return UncertaintyResult(p_minus=pm, predicted=pred, fit=fit, model=model, report=report, degenerate=None, **full)


def wrongly_clustered(cluster_labels, true_labels) -> dict[str, np.ndarray]:
    """Ground truth for p-: which faces are wrongly clustered, as the paper defines it.

    - **outlier**: the face's true identity differs from the majority identity of its cluster (majority ties go to
      the identity that sorts first);
    - **split**: the face is not an outlier, but its cluster is not the largest cluster of that majority identity
      (largest = most faces of the identity; ties go to the lowest cluster id), i.e. the identity was split and
      this face sits in one of the smaller pieces.

    ``wrong = outlier | split``. Faces with a negative cluster label (unclustered) count as neither here, and are
    returned in ``unclustered``. Returns boolean arrays (N,).
    """
    c = np.asarray(cluster_labels)
    t = np.asarray(true_labels)
    if c.ndim != 1 or t.shape != c.shape or not np.issubdtype(c.dtype, np.integer):
        raise ValueError("cluster_labels must be a 1-D integer array and true_labels must have the same shape")
    n = c.size
    keep = c >= 0
    outlier = np.zeros(n, bool)
    split = np.zeros(n, bool)
    if keep.any():
        _, ti = np.unique(t, return_inverse=True)
        cid, ci = np.unique(c[keep], return_inverse=True)
        tk = ti[keep]
        # counts per (cluster, identity)
        pair = ci.astype(np.int64) * (ti.max() + 1) + tk
        up, pc = np.unique(pair, return_counts=True)
        pcl, pid = up // (ti.max() + 1), up % (ti.max() + 1)
        order = np.lexsort((pid, -pc, pcl))  # by cluster, then count desc, then identity asc
        first = np.ones(order.size, bool)
        first[1:] = pcl[order][1:] != pcl[order][:-1]
        maj_cl, maj_id, maj_cnt = pcl[order][first], pid[order][first], pc[order][first]
        majority = np.empty(len(cid), np.int64)
        majority[maj_cl] = maj_id
        size_of_major = np.empty(len(cid), np.int64)
        size_of_major[maj_cl] = maj_cnt
        out_k = tk != majority[ci]
        # largest cluster per majority identity
        order2 = np.lexsort((np.arange(len(cid)), -size_of_major, majority))
        first2 = np.ones(len(cid), bool)
        first2[1:] = majority[order2][1:] != majority[order2][:-1]
        is_largest = np.zeros(len(cid), bool)
        is_largest[order2[first2]] = True
        outlier[keep] = out_k
        split[keep] = ~out_k & ~is_largest[ci]
    return {"wrong": outlier | split, "outlier": outlier, "split": split, "unclustered": ~keep}
