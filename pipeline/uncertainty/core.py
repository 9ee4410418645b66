"""Clustering uncertainty p- (paper Sec. 3.3): the probability that each face is wrongly clustered.

Steps of :func:`clustering_uncertainty`:

1. **Softmax regression** on the cluster assignments (:mod:`pipeline.uncertainty.softmax`), **cross-fitted**
   (``SoftmaxConfig.cross_fit=5``): each face is scored by a classifier fitted on the other folds. In-sample
   (``cross_fit=0``, the paper's literal reading) a linear classifier with one class per cluster memorises its
   training faces and its margins find wrong faces no better than chance (bench/results/uncertainty.md). The folds
   are **stratified by cluster** (``stratify=True``): every cluster of two or more faces has members in the
   training folds of each of its faces, so only singletons are ever scored against an unseen class.
   Above ``SoftmaxConfig.full_max_logits`` (N x K) each face is scored against its own cluster and the clusters
   nearest to it only (:mod:`pipeline.uncertainty.nearest`): the full softmax is N x K x d a pass, hours at 1M faces.
2. **Cluster geometry** (:func:`pipeline.uncertainty.calibrated.cluster_geometry`): cluster size, cosine to the
   leave-one-out centroid, cosine to the nearest other cluster's centroid (among the same nearest clusters when
   the softmax is narrowed).
3. **p-**, by ``PMinusConfig.method``:

   - ``"calibrated"`` (default): the shipped logistic model (``pipeline/uncertainty/calibration.json``, learned on
     the LFW training half only, its feature set chosen on an inner split; see
     :mod:`pipeline.uncertainty.calibrated`) -- separate models for members of clusters of >= 2 faces and for
     singletons (for a singleton p- is the probability it belongs to another existing cluster);
   - ``"mixture"``: posterior of the low component of a two-component Weibull mixture over the assigned margin
     (unsupervised, no truncation);
   - ``"paper"``: the literal Otsu + Weibull-survival-function reading (:mod:`pipeline.uncertainty.paper`).

   The paper's p- is always computed too and returned as ``p_minus_paper`` so the two can be reported side by side.
4. **Cluster review priority** (:func:`pipeline.uncertainty.scores.cluster_priority`) with the rule chosen by
   measurement and stored with the calibrator (``priority`` in calibration.json).

Degenerate input is reported in ``UncertaintyResult.degenerate`` with p- NaN -- never a silent guess: fewer than two
clusters (``one_cluster``) for every method; for ``paper`` / ``mixture`` also fewer than ``min_faces`` faces
(``too_few``), constant margins and a single margin mode (``one_mode``). Faces with a negative cluster label
(unclustered / noise) are left out and get NaN scores.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.features import check_embeddings
from pipeline.overlap.separation import score_histogram
from pipeline.progress import Progress
from pipeline.uncertainty.calibrated import Calibrator, cluster_geometry, load_calibrator, mixture_p_minus
from pipeline.uncertainty.paper import MARGIN_LABELS, PMinusConfig, PMinusFit, fit_p_minus, p_margin
from pipeline.uncertainty.scores import cluster_priority
from pipeline.uncertainty.nearest import candidates_for, fit_nearest, nearest_clusters, nearest_scores
from pipeline.uncertainty.softmax import SoftmaxConfig, SoftmaxModel, fit_softmax, softmax_scores

#: review-priority settings used when the calibrator file names none
DEFAULT_PRIORITY = {"rule": "expected_wrong", "merge_weight": 0.0, "merge_floor": 0.0}


def _paper_figure(fit: PMinusFit, pcfg: PMinusConfig) -> dict[str, Any]:
    """The paper's Fig. 4c numbers: the Weibull fitted to the low mode of the margin histogram, and its lines."""
    if fit.degenerate or fit.weibull is None:
        return {"curves": None, "thresholds": {}, "paper_fit": {"degenerate": fit.degenerate, "message": fit.message}}
    grid = np.linspace(0.0, 1.0, 400)
    wb = fit.weibull
    return {
        "curves": {"x": grid.tolist(), "wrong": (fit.wrong_fraction * wb.pdf(np.maximum(grid, 1e-12))).tolist()},
        "thresholds": {"otsu": fit.otsu.threshold, "wrong_upper": float(wb.ppf(pcfg.confidence))},
        "paper_fit": {"weibull": wb.to_dict(), "wrong_fraction": fit.wrong_fraction, "message": fit.message},
    }


@dataclass
class UncertaintyResult:
    p_minus: np.ndarray  # (N,) float32, by PMinusConfig.method
    entropy: np.ndarray  # (N,) float32
    max_logit: np.ndarray  # (N,) float32
    margin: np.ndarray  # (N,) float32
    assigned_margin: np.ndarray  # (N,) float32
    predicted: np.ndarray  # (N,) int64, the classifier's top-1 cluster label (original ids), -1 if unclustered
    fit: PMinusFit  # the paper's Otsu + Weibull fit (always attempted)
    model: SoftmaxModel | None
    report: dict[str, Any]
    degenerate: str | None = None
    p_minus_paper: np.ndarray | None = None  # (N,) float32, the paper's literal p- (NaN if its fit is degenerate)
    geometry: dict[str, np.ndarray] = field(default_factory=dict)  # cluster_geometry(...)
    priority: np.ndarray | None = None  # (C,) review priority by cluster label (NaN for labels with no face)

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-face arrays the web app reads, aligned with the input rows."""
        n = self.p_minus.shape[0]
        nan = np.full(n, np.nan, np.float32)
        g = self.geometry
        return {
            "p_minus": self.p_minus,
            "p_minus_paper": self.p_minus_paper if self.p_minus_paper is not None else nan,
            "entropy": self.entropy,
            "max_logit": self.max_logit,
            "margin": self.margin,
            "assigned_margin": self.assigned_margin,
            "predicted_cluster": self.predicted,
            "cluster_size": g["size"].astype(np.float32) if g else nan,
            "loo_cos": g["loo_cos"].astype(np.float32) if g else nan,
            "other_cos": g["other_cos"].astype(np.float32) if g else nan,
        }


def cross_fit_folds(y: np.ndarray, k: int, seed: int, stratify: bool = True) -> np.ndarray:
    """Fold index (0..k-1) per face. Stratified: within each cluster the faces are dealt round-robin in random
    order from a random starting fold, so a cluster of n >= 2 faces never has all its faces in one fold."""
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if not stratify or y.size == 0:
        return rng.integers(0, k, size=y.size)
    perm = rng.permutation(y.size)
    order = perm[np.argsort(y[perm], kind="stable")]
    ys = y[order]
    start = np.r_[0, np.flatnonzero(np.diff(ys)) + 1]
    lengths = np.diff(np.r_[start, ys.size])
    rank = np.arange(ys.size) - np.repeat(start, lengths)
    offset = rng.integers(0, k, size=int(y.max()) + 1)
    folds = np.empty(y.size, np.int64)
    folds[order] = (rank + offset[ys]) % k
    return folds


def _fit(x, y, n_ids: int, scfg: SoftmaxConfig, table, progress) -> SoftmaxModel:
    """The full softmax, or with a candidate table (pipeline.uncertainty.nearest) the nearest-clusters one."""
    if table is None:
        return fit_softmax(x, y, scfg, num_classes=n_ids, progress=progress)
    return fit_nearest(x, y, table, scfg, progress=progress)


def _scores(model: SoftmaxModel, x, y, own_logit=None) -> dict[str, np.ndarray]:
    if model.candidates is None:
        return softmax_scores(model, x, y, own_logit=own_logit)
    return nearest_scores(model, x, y, own_logit=own_logit)


def _cross_fit_scores(xk, y, n_ids, scfg: SoftmaxConfig, progress, table=None):
    folds = cross_fit_folds(y, scfg.cross_fit, scfg.seed, scfg.stratify)
    parts = []
    for f in range(scfg.cross_fit):
        tr, te = folds != f, folds == f
        if not te.any():
            continue
        cb = None
        if progress is not None:
            def cb(cur, tot, _f=f, **info):
                progress(_f * tot + cur, scfg.cross_fit * tot, fold=_f + 1, **info)
        m_f = _fit(xk[tr], y[tr], n_ids, scfg, table, cb)
        # A face whose cluster has no member in the training folds (with stratified folds: a singleton) is scored
        # against an unseen class; its own-cluster logit is what the fold gives an unseen cluster (about 0), or,
        # with ``unseen_quantile`` q, the q-quantile of the own-cluster logits of the faces that can be scored.
        seen = np.zeros(n_ids, bool)
        seen[y[tr]] = True
        te_idx = np.flatnonzero(te)
        unseen = ~seen[y[te_idx]]
        sc = _scores(m_f, xk[te_idx], y[te_idx])
        if scfg.unseen_quantile is not None and unseen.any() and (~unseen).any():
            tau = float(np.quantile(sc["own_logit"][~unseen], scfg.unseen_quantile))
            ov = np.full(unseen.sum(), tau, dtype=np.float32)
            sc_u = _scores(m_f, xk[te_idx[unseen]], y[te_idx[unseen]], own_logit=ov)
            for key in sc:
                sc[key][unseen] = sc_u[key]
        parts.append((te, sc, m_f))
    scores = {k: np.empty(len(y), dtype=v.dtype) for k, v in parts[0][1].items()}
    for te, sc, _ in parts:
        for k, v in sc.items():
            scores[k][te] = v
    model = parts[-1][2]
    model.seconds = sum(p[2].seconds for p in parts)
    return scores, model


@dataclass
class _Inputs:
    """The checked inputs of one ``clustering_uncertainty`` call and what every result shares."""

    x: np.ndarray  # (N, d)
    lab: np.ndarray  # (N,) int64, negative = unclustered
    keep: np.ndarray  # (N,) bool
    ids: np.ndarray  # cluster ids of the clustered faces
    y: np.ndarray  # (K,) index into ids
    scfg: SoftmaxConfig
    pcfg: PMinusConfig
    base_report: dict[str, Any]

    @property
    def nan(self) -> np.ndarray:
        return np.full(len(self.lab), np.nan, dtype=np.float32)

    def spread(self, scores: dict[str, np.ndarray] | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-face score arrays (N,) and predicted cluster ids (N,) from the clustered faces' scores."""
        full = {k: self.nan for k in ("entropy", "max_logit", "margin", "assigned_margin")}
        pred = np.full(len(self.lab), -1, dtype=np.int64)
        if scores is not None:
            for k in full:
                full[k][self.keep] = scores[k]
            pred[self.keep] = self.ids[scores["predicted"]]
        return full, pred


def _check_inputs(features, cluster_labels, scfg: SoftmaxConfig, pcfg: PMinusConfig) -> _Inputs:
    x = check_embeddings(features, name="features")
    lab = np.asarray(cluster_labels)
    if lab.shape != (x.shape[0],) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"cluster_labels must be an integer array of shape ({x.shape[0]},), got "
                         f"{lab.dtype} {lab.shape}")
    lab = lab.astype(np.int64)
    keep = lab >= 0
    ids, y = np.unique(lab[keep], return_inverse=True)
    base = {"kind": "uncertainty", "n": int(len(lab)), "clustered": int(keep.sum()), "clusters": int(len(ids)),
            "softmax": asdict(scfg), "p_minus_config": asdict(pcfg), "p_minus_method": pcfg.method,
            "labels": {"x": MARGIN_LABELS[pcfg.margin_kind], "low": "wrong"}}
    return _Inputs(x=x, lab=lab, keep=keep, ids=ids, y=y, scfg=scfg, pcfg=pcfg, base_report=base)


def _degenerate(inp: _Inputs, reason: str, message: str, model=None, scores=None, fit=None, geometry=None,
                paper=None) -> UncertaintyResult:
    """A result with p- NaN everywhere that says why no p- could be fitted."""
    rep = {**inp.base_report, "degenerate": reason, "message": message, "histogram": None, "curves": None,
           "thresholds": {}}
    full, pred = inp.spread(scores)
    if scores is not None:
        rep["histogram"] = score_histogram(scores["p_margin"], inp.pcfg.hist_bins, 0.0, 1.0)
    return UncertaintyResult(p_minus=inp.nan, predicted=pred,
                             fit=fit or PMinusFit(None, None, float("nan"), reason, message), model=model,
                             report=rep, degenerate=reason, p_minus_paper=inp.nan if paper is None else paper,
                             geometry=geometry or {}, **full)


def _candidate_table(inp: _Inputs) -> np.ndarray | None:
    """Each cluster's nearest clusters where the full softmax would be too big (``SoftmaxConfig.candidates``)."""
    c = candidates_for(inp.scfg, len(inp.y), len(inp.ids))
    return nearest_clusters(inp.x[inp.keep], inp.y, len(inp.ids), c) if c else None


def _softmax_scores(inp: _Inputs, progress: Progress | None, table=None) -> tuple[dict[str, np.ndarray], SoftmaxModel]:
    """Softmax regression on the cluster assignments (cross-fitted when asked) and the per-face scores; with a
    candidate table, over each face's nearest clusters (pipeline.uncertainty.nearest)."""
    xk = inp.x[inp.keep]
    if inp.scfg.cross_fit >= 2:
        scores, model = _cross_fit_scores(xk, inp.y, len(inp.ids), inp.scfg, progress, table)
    else:
        model = _fit(xk, inp.y, len(inp.ids), inp.scfg, table, progress)
        scores = _scores(model, xk, inp.y)
    scores["p_margin"] = p_margin(scores, inp.pcfg.margin_kind)
    return scores, model


class _NoPMinus(Exception):
    """The chosen p- method could not fit (reason, message)."""


def _chosen_p_minus(inp: _Inputs, fit: PMinusFit, paper: np.ndarray, scores: dict[str, np.ndarray],
                    full: dict[str, np.ndarray], geometry: dict, calibrator: Calibrator | None) -> tuple[np.ndarray, str, dict, dict]:
    """p- (N,) by ``pcfg.method``, its message, extra report entries and the priority settings."""
    pcfg, priority_cfg, extra = inp.pcfg, dict(DEFAULT_PRIORITY), {}
    if pcfg.method == "paper":
        if fit.degenerate:
            raise _NoPMinus(fit.degenerate, fit.message)
        return paper.copy(), fit.message, extra, priority_cfg
    if pcfg.method == "mixture":
        pk, info = mixture_p_minus(scores["assigned_margin"])
        if info["degenerate"]:
            raise _NoPMinus(info["degenerate"], "mixture: " + info["message"])
        pm = inp.nan
        pm[inp.keep] = pk
        extra["mixture"] = info["mixture"]
        return pm, ("p- = posterior of the low component of a two-component Weibull mixture over the assigned "
                    "margin"), extra, priority_cfg
    cal = calibrator or load_calibrator(pcfg.calibration)
    g = dict(geometry)
    g["assigned_margin"] = full["assigned_margin"].astype(np.float64)
    g["margin"] = full["margin"].astype(np.float64)
    priority_cfg.update(cal.meta.get("priority") or {})
    extra["calibrator"] = {"member": cal.member.to_dict(), "singleton": cal.singleton.to_dict(),
                           **{k: v for k, v in cal.meta.items() if k in ("trained_on", "selection", "priority")}}
    return cal.p_minus(g), "p- from the calibrated logistic model (member / singleton)", extra, priority_cfg


def _report(inp: _Inputs, scores: dict, model: SoftmaxModel, fit: PMinusFit, pm: np.ndarray, paper: np.ndarray,
            geometry: dict, message: str, extra: dict, priority_cfg: dict) -> dict[str, Any]:
    keep, pcfg = inp.keep, inp.pcfg
    report = {
        **inp.base_report, "degenerate": None, "message": message,
        "histogram": score_histogram(scores["p_margin"], pcfg.hist_bins, 0.0, 1.0),
        **_paper_figure(fit, pcfg),
        "p_minus_quantiles": {str(q): float(np.quantile(pm[keep], q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
        "mean_p_minus": float(np.mean(pm[keep])), "expected_wrong_faces": float(np.sum(pm[keep])),
        "priority": priority_cfg, "train_history": model.history, "softmax_seconds": model.seconds,
        "softmax_classes_per_face": int(len(inp.ids) if model.candidates is None else model.candidates.shape[1]),
        "train_accuracy": float(np.mean(scores["predicted"] == inp.y)),
        "counts": {"clusters": int(len(inp.ids)), "faces": int(keep.sum()),
                   "singletons": int(np.sum(geometry["singleton"]))},
        **extra,
    }
    if not fit.degenerate:
        grid, wb = np.linspace(0.0, 1.0, 400), fit.weibull
        report["paper"] = {"weibull": wb.to_dict(), "wrong_fraction": fit.wrong_fraction, "otsu": asdict(fit.otsu),
                           "mean_p_minus": float(np.mean(paper[keep]))}
        report["curves"] = {"x": grid.tolist(),
                            "wrong": (fit.wrong_fraction * wb.pdf(np.maximum(grid, 1e-12))).tolist()}
        report["thresholds"] = {"otsu": fit.otsu.threshold, "wrong_upper": float(wb.ppf(pcfg.confidence))}
        report["weibull"] = wb.to_dict()
    return report


def clustering_uncertainty(
    features,
    cluster_labels,
    softmax: SoftmaxConfig | None = None,
    p_minus: PMinusConfig | None = None,
    *,
    calibrator: Calibrator | None = None,
    progress: Progress | None = None,
) -> UncertaintyResult:
    """Softmax regression on the cluster assignments, per-face scores, cluster geometry, p- and cluster priority.

    ``features`` (N, d) L2-normalised float; ``cluster_labels`` (N,) int (negative = unclustered, scored NaN).
    ``calibrator`` overrides the calibrator file for ``method='calibrated'``.
    """
    inp = _check_inputs(features, cluster_labels, softmax or SoftmaxConfig(), p_minus or PMinusConfig())
    clustered = int(inp.keep.sum())
    if inp.pcfg.method != "calibrated" and clustered < inp.pcfg.min_faces:
        return _degenerate(inp, "too_few", f"{clustered} clustered faces; at least {inp.pcfg.min_faces} are needed")
    if len(inp.ids) < 2:
        return _degenerate(inp, "one_cluster", "fewer than two clusters; there is nothing to be unsure of")
    table = _candidate_table(inp)
    scores, model = _softmax_scores(inp, progress, table)
    geometry = cluster_geometry(inp.x, inp.lab, candidates=table)
    full, pred = inp.spread(scores)
    fit = fit_p_minus(scores["p_margin"], inp.pcfg)  # the paper's literal p-, reported next to the chosen one
    paper = inp.nan
    if not fit.degenerate:
        paper[inp.keep] = fit.p_minus(scores["p_margin"])
    try:
        pm, message, extra, priority_cfg = _chosen_p_minus(inp, fit, paper, scores, full, geometry, calibrator)
    except _NoPMinus as exc:
        return _degenerate(inp, exc.args[0], exc.args[1], model, scores, fit, geometry, paper)
    prio = cluster_priority(inp.lab, pm, inp.x, rule=priority_cfg["rule"], merge_weight=priority_cfg["merge_weight"],
                            merge_floor=priority_cfg.get("merge_floor", 0.0))
    report = _report(inp, scores, model, fit, pm, paper, geometry, message, extra, priority_cfg)
    return UncertaintyResult(p_minus=pm, predicted=pred, fit=fit, model=model, report=report, degenerate=None,
                             p_minus_paper=paper, geometry=geometry, priority=prio, **full)


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
