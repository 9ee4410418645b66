"""Calibrated p-: the probability that a face is wrongly clustered, from a shipped logistic model.

Per-face inputs, all computable without ground truth (:func:`cluster_geometry` and the cross-fitted softmax):

- ``loo_cos``: cosine between the face and the L2-normalised mean of the *other* members of its cluster
  (leave-one-out centroid; NaN for singletons);
- ``other_cos``: largest cosine between the face and the normalised centroid of any *other* cluster;
- ``size``: its cluster's size; ``other_size``: the size of that nearest other cluster;
- ``assigned_margin`` / ``margin``: the cross-fitted softmax margins (:mod:`pipeline.uncertainty.softmax`).

**Two models by design.** A face in a cluster of two or more is wrongly clustered when it is an outlier of its
cluster or sits in a split-off piece of its identity; a *singleton* cannot be an outlier of its own cluster -- it is
wrong only when its identity has another, larger cluster (a split). So:

- ``member`` model (cluster size >= 2): logistic regression on features of ``loo_cos``, ``other_cos``, size, and
  the softmax margin;
- ``singleton`` model: p- = probability that the face belongs to another existing cluster, a logistic regression on
  its nearest-cluster similarity ``other_cos`` (and that cluster's size).

Which named features (:data:`FEATURES`) each model uses is chosen by measurement and written in the JSON; the
shipped one uses loo_cos, other_cos, log / inverse size and the assigned margin for members, and other_cos, its
square and the nearest cluster's log size for singletons. Inputs are clipped to the range seen in training.
Measured (bench/results/uncertainty.md): on the LFW test half the calibrated p- has AP 0.33 at a base rate of
0.018 and calibration bins within 0.06; among faces in clusters of >= 2 it does not beat the leave-one-out
centroid distance, and on glint-sample (24 identities, every small cluster a split) cluster size alone is perfect.

No fold of the cross-fit leaves a cluster of size >= 2 unseen: the folds are stratified by cluster
(``SoftmaxConfig.stratify``); only singletons are unseen, and their p- does not use their own-cluster logit.

The parameters are learned with ground truth on the *training half of LFW only* (bench/uncertainty.py; identities
split by seed 0 as in bench/clustering_quality.py, clusters from the default clusterer Infomap), the feature set
and regularisation chosen on an inner split of that half, and shipped in ``pipeline/uncertainty/calibration.json``
(:func:`load_calibrator`). At run time the product has no ground truth; it applies these fixed parameters.

:func:`mixture_p_minus` is the unsupervised alternative: the posterior of the low component of the two-component
Weibull mixture (:func:`pipeline.overlap.evt.fit_weibull_mixture`) over ``u = (1 + assigned_margin) / 2`` -- a fit of
both modes over all margins, so nothing is truncated. Which of the two is calibrated is measured, not assumed.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.overlap.evt import EvtError, MixtureConfig, fit_weibull_mixture

CALIBRATION_PATH = Path(__file__).with_name("calibration.json")

#: Named per-face features a model may use. ``g`` is the dict from :func:`cluster_geometry` plus softmax scores.
FEATURES = {
    "loo_cos": lambda g: np.nan_to_num(g["loo_cos"], nan=0.0),
    "other_cos": lambda g: g["other_cos"],
    "loo_minus_other": lambda g: np.nan_to_num(g["loo_cos"], nan=0.0) - g["other_cos"],
    "log_size": lambda g: np.log(g["size"]),
    "inv_size": lambda g: 1.0 / g["size"],
    "log_other_size": lambda g: np.log(g["other_size"]),
    "assigned_margin": lambda g: g["assigned_margin"],
    "top2_margin": lambda g: g["margin"],
    "loo_cos_sq": lambda g: np.nan_to_num(g["loo_cos"], nan=0.0) ** 2,
    "other_cos_sq": lambda g: g["other_cos"] ** 2,
    "loo_x_other": lambda g: np.nan_to_num(g["loo_cos"], nan=0.0) * g["other_cos"],
}


def cluster_geometry(features, cluster_labels, *, block: int = 4096, candidates=None) -> dict[str, np.ndarray]:
    """Per-face cluster geometry (see the module docstring): ``size``, ``loo_cos``, ``other_cos``,
    ``other_size``, ``other_cluster`` (label of the nearest other cluster, -1 if none), ``singleton``.

    ``features`` (N, d) L2-normalised; ``cluster_labels`` (N,) int, negative = unclustered (NaN / -1 there).
    Cost: one (N, C) cosine product, computed in row blocks of ``block`` faces. With ``candidates`` (a (C, m)
    table of cluster indices in sorted-label order, each row its own cluster first: pipeline.uncertainty.nearest)
    the nearest other cluster is looked for among a face's cluster's m - 1 candidates only (N m d).
    """
    x = np.asarray(features, dtype=np.float32)
    lab = np.asarray(cluster_labels).astype(np.int64)
    n = x.shape[0]
    keep = lab >= 0
    out = {k: np.full(n, np.nan, np.float64) for k in ("size", "loo_cos", "other_cos", "other_size")}
    out["other_cluster"] = np.full(n, -1, np.int64)
    out["singleton"] = np.zeros(n, bool)
    if not keep.any():
        return out
    ids, y = np.unique(lab[keep], return_inverse=True)
    xk = x[keep].astype(np.float64)
    c = len(ids)
    sums = np.zeros((c, x.shape[1]))
    np.add.at(sums, y, xk)
    sizes = np.bincount(y, minlength=c).astype(np.float64)
    loo = sums[y] - xk
    norm = np.linalg.norm(loo, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        loo_cos = np.where(sizes[y] > 1, (loo * xk).sum(1) / np.maximum(norm, 1e-12), np.nan)
    cent = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    other_cos = np.full(len(y), np.nan)
    other_idx = np.full(len(y), -1, np.int64)
    if c >= 2 and candidates is not None:
        other_cos, other_idx = _nearest_other(xk.astype(np.float32), y, cent, np.asarray(candidates), block)
    elif c >= 2:
        xf = xk.astype(np.float32)
        for i in range(0, len(y), block):
            s = xf[i : i + block] @ cent.T
            s[np.arange(s.shape[0]), y[i : i + block]] = -np.inf
            j = s.argmax(1)
            other_idx[i : i + block] = j
            other_cos[i : i + block] = s[np.arange(s.shape[0]), j]
    out["size"][keep] = sizes[y]
    out["loo_cos"][keep] = loo_cos
    out["other_cos"][keep] = other_cos
    out["other_size"][keep] = np.where(other_idx >= 0, sizes[np.maximum(other_idx, 0)], np.nan)
    out["other_cluster"][keep] = np.where(other_idx >= 0, ids[np.maximum(other_idx, 0)], -1)
    out["singleton"][keep] = sizes[y] == 1
    return out


def _nearest_other(x: np.ndarray, y: np.ndarray, cent: np.ndarray, table: np.ndarray, block: int):
    """(cosine, index) of the nearest other cluster among each face's cluster's candidates (table columns 1:)."""
    import torch

    other = torch.from_numpy(np.ascontiguousarray(table[:, 1:]))
    cent_t, x_t, y_t = torch.from_numpy(cent), torch.from_numpy(x), torch.from_numpy(y)
    cos, idx = np.empty(len(y)), np.empty(len(y), np.int64)
    for i in range(0, len(y), block):
        cand = other[y_t[i:i + block]]  # (B, m - 1)
        s = torch.bmm(cent_t[cand], x_t[i:i + block, :, None])[..., 0]  # (B, m - 1)
        best = s.argmax(1)
        cos[i:i + block] = s.gather(1, best[:, None])[:, 0].numpy()
        idx[i:i + block] = cand.gather(1, best[:, None])[:, 0].numpy()
    return cos, idx


def design(g: dict[str, np.ndarray], names, rows=None) -> np.ndarray:
    """(n, len(names)) design matrix of the named features (no intercept column)."""
    cols = [np.asarray(FEATURES[nm](g), dtype=np.float64) for nm in names]
    m = np.stack(cols, axis=1) if cols else np.zeros((len(g["size"]), 0))
    return m if rows is None else m[rows]


def fit_logistic(x, y, *, l2: float = 1e-2, max_iter: int = 100, tol: float = 1e-10) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression by Newton's method (pure NumPy). Features are standardised inside and the
    coefficients returned on the original scale; the intercept is not penalised. Returns ``(coef, intercept)``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError("x must be (n, p) and y (n,)")
    if not (np.isfinite(x).all() and np.isin(y, (0, 1)).all()):
        raise ValueError("x must be finite and y binary")
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    z = np.column_stack([np.ones(len(y)), (x - mu) / sd])
    w = np.zeros(z.shape[1])
    rate = np.clip(y.mean(), 1e-6, 1 - 1e-6)
    w[0] = math.log(rate / (1 - rate))
    pen = np.full(z.shape[1], l2 * len(y))  # penalty 0.5 * l2 * n * |w|^2 on standardised features
    pen[0] = 0.0

    def objective(v):
        eta = z @ v
        return float(np.sum(np.logaddexp(0.0, eta) - y * eta) + 0.5 * np.sum(pen * v * v))

    obj = objective(w)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -50, 50)))
        grad = z.T @ (p - y) + pen * w
        h = (z * (p * (1 - p))[:, None]).T @ z + np.diag(pen) + 1e-9 * np.eye(z.shape[1])
        step = np.linalg.solve(h, grad)
        t = 1.0
        while t > 1e-8:  # backtracking: Newton's full step overshoots on (nearly) separable data
            cand = w - t * step
            new = objective(cand)
            if new <= obj + 1e-12 * abs(obj):
                break
            t *= 0.5
        else:
            break
        w, obj = cand, new
        if np.abs(t * step).max() < tol:
            break
    coef = w[1:] / sd
    return coef, float(w[0] - (coef * mu).sum())


@dataclass
class LogisticPart:
    """``p = 1 / (1 + exp(-(x @ coef + intercept)))`` over the named features. ``bounds`` (one ``[lo, hi]`` per
    feature, the range seen in training): inputs are clipped to it, so the model never extrapolates (a quadratic
    term fitted on cosines in [0.3, 0.6] would otherwise turn upwards outside that range)."""

    features: list[str]
    coef: np.ndarray
    intercept: float
    bounds: list | None = None

    def predict(self, g: dict[str, np.ndarray], rows) -> np.ndarray:
        x = design(g, self.features, rows)
        if self.bounds is not None:
            b = np.asarray(self.bounds, dtype=np.float64)
            x = np.clip(x, b[:, 0], b[:, 1])
        eta = x @ np.asarray(self.coef, dtype=np.float64) + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(eta, -50, 50)))

    def to_dict(self) -> dict:
        d = {"features": list(self.features), "coef": [float(v) for v in self.coef],
             "intercept": float(self.intercept)}
        if self.bounds is not None:
            d["bounds"] = [[float(lo), float(hi)] for lo, hi in self.bounds]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LogisticPart":
        unknown = set(d["features"]) - set(FEATURES)
        if unknown:
            raise ValueError(f"calibrator uses unknown features {sorted(unknown)}")
        if len(d["coef"]) != len(d["features"]):
            raise ValueError("calibrator: one coefficient per feature is required")
        bounds = d.get("bounds")
        if bounds is not None and len(bounds) != len(d["features"]):
            raise ValueError("calibrator: one [lo, hi] bound per feature is required")
        return cls(list(d["features"]), np.asarray(d["coef"], dtype=np.float64), float(d["intercept"]), bounds)


@dataclass
class Calibrator:
    """Two logistic models (``member``: clusters of >= 2 faces; ``singleton``) and where they came from."""

    member: LogisticPart
    singleton: LogisticPart
    meta: dict = field(default_factory=dict)

    def p_minus(self, g: dict[str, np.ndarray]) -> np.ndarray:
        """p- (N,) float32 from the geometry/softmax dict ``g``; NaN where ``size`` is NaN (unclustered)."""
        n = len(g["size"])
        out = np.full(n, np.nan, np.float64)
        ok = np.isfinite(g["size"]) & np.isfinite(g["other_cos"])
        single = ok & (g["size"] == 1)
        member = ok & (g["size"] > 1)
        if member.any():
            out[member] = self.member.predict(g, member)
        if single.any():
            out[single] = self.singleton.predict(g, single)
        return out.astype(np.float32)

    def to_dict(self) -> dict:
        return {"kind": "facecurate p- calibrator", "version": 1, "member": self.member.to_dict(),
                "singleton": self.singleton.to_dict(), **self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibrator":
        meta = {k: v for k, v in d.items() if k not in ("member", "singleton", "kind", "version")}
        return cls(LogisticPart.from_dict(d["member"]), LogisticPart.from_dict(d["singleton"]), meta)

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def fit_calibrator(g: dict[str, np.ndarray], wrong, member_features, singleton_features, *, l2: float = 1e-2,
                   singleton_l2: float | None = None, meta: dict | None = None) -> Calibrator:
    """Fit both logistic models on labelled data: ``g`` as for :meth:`Calibrator.p_minus`, ``wrong`` (N,) bool
    ground truth (:func:`pipeline.uncertainty.wrongly_clustered`). ``singleton_l2`` defaults to ``l2``.
    Unclustered faces are ignored."""
    wrong = np.asarray(wrong, bool)
    ok = np.isfinite(g["size"]) & np.isfinite(g["other_cos"])
    parts = {}
    l2s = {"member": l2, "singleton": l2 if singleton_l2 is None else singleton_l2}
    for name, rows, feats in (("member", ok & (g["size"] > 1), member_features),
                              ("singleton", ok & (g["size"] == 1), singleton_features)):
        if rows.sum() < 2 or wrong[rows].all() or not wrong[rows].any():
            raise ValueError(f"fit_calibrator: the {name} faces need both wrong and right examples")
        x = design(g, feats, rows)
        coef, b = fit_logistic(x, wrong[rows], l2=l2s[name])
        parts[name] = LogisticPart(list(feats), coef, b, np.stack([x.min(0), x.max(0)], axis=1).tolist())
    return Calibrator(parts["member"], parts["singleton"], dict(meta or {}, l2=l2s))


_CACHE: dict = {}


def load_calibrator(path=None) -> Calibrator:
    """The shipped calibrator (``pipeline/uncertainty/calibration.json``) or one saved by :meth:`Calibrator.save`."""
    p = Path(path) if path is not None else CALIBRATION_PATH
    key = str(p.resolve())
    if key not in _CACHE:
        if not p.is_file():
            raise FileNotFoundError(f"no p- calibrator at {p} (bench/uncertainty.py writes it)")
        _CACHE[key] = Calibrator.from_dict(json.loads(p.read_text()))
    return _CACHE[key]


def mixture_p_minus(assigned_margin, config: MixtureConfig | None = None) -> tuple[np.ndarray, dict]:
    """Unsupervised p-: posterior of the low (wrong) component of a two-component Weibull mixture over
    ``u = (1 + assigned_margin) / 2``. Returns ``(p_minus, info)``; p- is NaN with ``info['degenerate']`` set when
    the mixture cannot be fitted (too few, constant, or a single mode)."""
    am = np.asarray(assigned_margin, dtype=np.float64)
    u = np.clip((1 + am) / 2, 0, 1)
    try:
        mix = fit_weibull_mixture(u, config)
    except EvtError as exc:
        return np.full(u.shape, np.nan, np.float32), {"degenerate": "one_mode", "message": str(exc)}
    p = 1.0 - mix.posterior_high(u)
    return p.astype(np.float32), {"degenerate": None, "mixture": mix.to_dict()}
