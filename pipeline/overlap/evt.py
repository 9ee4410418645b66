"""Extreme value tools shared by overlap separation (paper Sec. 3.1) and clustering uncertainty (Sec. 3.3).

Two building blocks:

- :func:`otsu` / :func:`otsu_threshold`: Otsu's method on a 1-D score histogram, the split that maximises the
  between-class variance. It is exactly equivariant to positive affine maps of the scores (the histogram is
  taken over ``[min, max]``), and it also returns the *separability* ``eta = sigma_between^2 / sigma_total^2``.
- Weibull models with explicit location handling:

  * :func:`fit_weibull` -- weighted maximum-likelihood fit of a two-parameter Weibull (shape ``k``, scale
    ``lam``) to strictly positive values; the shape solves the profile-likelihood equation by safeguarded
    Newton iterations, the scale then has a closed form.
  * :class:`Weibull` -- ``pdf``, ``logpdf``, ``cdf``, ``sf``, ``ppf`` (quantiles) of
    ``W(x) = 1 - exp(-((x - loc) / lam) ** k)`` for ``x > loc``.
  * :func:`fit_weibull_mixture` -- a two-component mixture fitted by EM on scores that need not be positive.

Location handling for the mixture (scores may be negative, e.g. cosine logits in ``[-1, 1]``): the scores are
first mapped to the unit interval, ``z = (s - min(s)) / (max(s) - min(s))``. The *low* component models the
distance above a lower end point, ``x = z + delta_low`` (a Weibull anchored ``delta_low`` below the smallest
score); the *high* component models the distance below an upper end point, ``y = 1 + delta_high - z`` (a
Weibull anchored above the largest score, so its density is skewed towards low scores, as a mode of scores
piled up near the top is). ``delta_low`` and ``delta_high`` are the Weibull location parameters; they are
chosen by likelihood over a small grid (``MixtureConfig.deltas``; short EM runs on at most ``select_sample``
scores rank the pairs, then EM runs to convergence on every score with the best pair), so the fit is a
three-parameter Weibull per component with the location profiled on a grid rather than a blind ``s - min + eps``
shift. EM starts from Otsu's split (hard responsibilities) and alternates posterior responsibilities with
weighted Weibull maximum-likelihood fits.
Because the model lives on ``z``, every fitted quantity transforms exactly with the scores: multiplying the
scores by ``a > 0`` and adding ``b`` gives the same ``z``, the same fit, and thresholds mapped by
``s -> a s + b`` (tested in tests/pipeline/test_evt.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import optimize

__all__ = [
    "EvtError",
    "OtsuResult",
    "otsu",
    "otsu_threshold",
    "Weibull",
    "fit_weibull",
    "MixtureConfig",
    "WeibullMixture",
    "fit_weibull_mixture",
    "check_scores",
]

_TINY = 1e-12


class EvtError(ValueError):
    """Scores that cannot be modelled (too few, non-finite, constant)."""


def check_scores(scores, *, name: str = "scores", min_count: int = 2) -> np.ndarray:
    """Return ``scores`` as a 1-D float64 array after checking shape, dtype and finiteness."""
    arr = np.asarray(scores)
    if arr.ndim != 1:
        raise EvtError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise EvtError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise EvtError(
            f"{name} contains {int(bad.sum())} NaN or infinite values (first at index {int(np.flatnonzero(bad)[0])})"
        )
    if arr.size < min_count:
        raise EvtError(f"{name} needs at least {min_count} values, got {arr.size}")
    return arr


# ----------------------------------------------------------------------------------------------------- Otsu


@dataclass(frozen=True)
class OtsuResult:
    threshold: float  # split point: class 0 is scores < threshold, class 1 is scores >= threshold
    separability: float  # between-class variance / total variance, in [0, 1]
    low_fraction: float  # fraction of scores below the threshold
    bins: int


def otsu(scores, bins: int = 256) -> OtsuResult:
    """Otsu's threshold of a 1-D score sample (histogram with ``bins`` equal bins over ``[min, max]``).

    The threshold is the bin edge that maximises the between-class variance; ties go to the middle of the
    tied run of edges. Raises :class:`EvtError` for constant or non-finite scores.
    """
    s = check_scores(scores)
    if not isinstance(bins, (int, np.integer)) or bins < 2:
        raise EvtError(f"bins must be an integer >= 2, got {bins!r}")
    lo, hi = float(s.min()), float(s.max())
    if not hi > lo:
        raise EvtError(f"scores are constant ({lo}); Otsu's threshold is undefined")
    counts, edges = np.histogram(s, bins=int(bins), range=(lo, hi))
    centers = 0.5 * (edges[:-1] + edges[1:])
    p = counts / counts.sum()
    w0 = np.cumsum(p)[:-1]  # weight of class 0 when cutting after bin i (edge i + 1)
    mu = np.cumsum(p * centers)[:-1]
    mu_t = float((p * centers).sum())
    w1 = 1.0 - w0
    valid = (w0 > 0) & (w1 > 0)
    between = np.zeros_like(w0)
    between[valid] = (mu_t * w0[valid] - mu[valid]) ** 2 / (w0[valid] * w1[valid])
    total = float((p * (centers - mu_t) ** 2).sum())
    best = between.max()
    ties = np.flatnonzero(between >= best * (1 - 1e-12))
    i = int(ties[len(ties) // 2])
    threshold = float(edges[i + 1])
    return OtsuResult(
        threshold=threshold,
        separability=float(best / total) if total > 0 else 0.0,
        low_fraction=float(np.mean(s < threshold)),
        bins=int(bins),
    )


def otsu_threshold(scores, bins: int = 256) -> float:
    """Otsu's threshold (see :func:`otsu`)."""
    return otsu(scores, bins=bins).threshold


# ----------------------------------------------------------------------------------------------------- Weibull


@dataclass(frozen=True)
class Weibull:
    """``W(x) = 1 - exp(-((x - loc) / scale) ** shape)`` for ``x > loc`` (``sign=-1`` mirrors it: the variable
    is ``loc - x``, so the support is ``x < loc`` and the density is skewed towards low values)."""

    shape: float
    scale: float
    loc: float = 0.0
    sign: int = 1

    def __post_init__(self):
        if not (self.shape > 0 and self.scale > 0 and math.isfinite(self.shape) and math.isfinite(self.scale)):
            raise EvtError(f"Weibull needs positive finite shape and scale, got {self.shape}, {self.scale}")
        if self.sign not in (1, -1):
            raise EvtError("sign must be +1 or -1")

    def _u(self, x):
        return self.sign * (np.asarray(x, dtype=np.float64) - self.loc)

    def logpdf(self, x) -> np.ndarray:
        u = self._u(x)
        k, lam = self.shape, self.scale
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(u > 0, u, 1.0) / lam
            out = math.log(k / lam) + (k - 1) * np.log(t) - t**k
        return np.where(u > 0, out, -np.inf)

    def pdf(self, x) -> np.ndarray:
        return np.exp(self.logpdf(x))

    def _cdf_u(self, u):
        t = np.where(u > 0, u, 0.0) / self.scale
        return -np.expm1(-(t**self.shape))

    def cdf(self, x) -> np.ndarray:
        """P(X <= x)."""
        u = self._u(x)
        c = self._cdf_u(u)
        return c if self.sign == 1 else 1.0 - c

    def sf(self, x) -> np.ndarray:
        """P(X > x)."""
        u = self._u(x)
        c = self._cdf_u(u)
        return 1.0 - c if self.sign == 1 else c

    def ppf(self, q) -> np.ndarray:
        """Quantile: the ``x`` with ``cdf(x) = q``."""
        q = np.asarray(q, dtype=np.float64)
        if np.any((q < 0) | (q > 1)):
            raise EvtError("quantile levels must lie in [0, 1]")
        qq = q if self.sign == 1 else 1.0 - q
        u = self.scale * (-np.log1p(-qq)) ** (1.0 / self.shape)
        return self.loc + self.sign * u

    def mean(self) -> float:
        return self.loc + self.sign * self.scale * math.gamma(1 + 1 / self.shape)

    def mode(self) -> float:
        if self.shape <= 1:
            return self.loc
        return self.loc + self.sign * self.scale * ((self.shape - 1) / self.shape) ** (1 / self.shape)

    def to_dict(self) -> dict:
        return {k: float(v) if k != "sign" else int(v) for k, v in asdict(self).items()}


def _shape_equation(k: float, logx: np.ndarray, w: np.ndarray, mean_log: float):
    """g(k) = sum w x^k ln x / sum w x^k - 1/k - mean_w(ln x) and its derivative (g is increasing in k)."""
    a = k * (logx - logx.max())
    e = w * np.exp(a)
    se = e.sum()
    m1 = (e * logx).sum() / se
    m2 = (e * logx * logx).sum() / se
    g = m1 - 1.0 / k - mean_log
    dg = (m2 - m1 * m1) + 1.0 / (k * k)
    return g, dg


def fit_weibull(x, weights=None, *, init_shape: float | None = None, tol: float = 1e-9) -> Weibull:
    """Weighted maximum-likelihood two-parameter Weibull (location 0) for strictly positive ``x``.

    The shape ``k`` solves ``sum w x^k ln x / sum w x^k - 1/k = mean_w(ln x)`` (Newton in ``log k`` from
    ``init_shape``, with a bracketing fallback); the scale is ``(sum w x^k / sum w) ** (1/k)``.
    """
    x = check_scores(x, name="x")
    if np.any(x <= 0):
        raise EvtError("Weibull fit needs strictly positive values (shift the scores first)")
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != x.shape or np.any(w < 0) or not np.isfinite(w).all():
        raise EvtError("weights must be finite, non-negative and aligned with x")
    keep = w > _TINY * max(w.max(), _TINY)
    x, w = x[keep], w[keep]
    if w.sum() <= 0 or x.size < 2:
        raise EvtError("Weibull fit needs at least two points with positive weight")
    logx = np.log(x)
    wsum = w.sum()
    mean_log = float((w * logx).sum() / wsum)
    var_log = float((w * (logx - mean_log) ** 2).sum() / wsum)
    if var_log <= 1e-20:
        raise EvtError("Weibull fit needs values that are not all equal")
    # Method-of-moments start on log x: Var(ln X) = pi^2 / (6 k^2).
    k = float(init_shape) if init_shape and init_shape > 0 else math.pi / math.sqrt(6 * var_log)
    converged = False
    for _ in range(50):
        g, dg = _shape_equation(k, logx, w, mean_log)
        step = g / (dg * k)  # Newton step in u = log k
        step = float(np.clip(step, -1.0, 1.0))
        k = k * math.exp(-step)
        if abs(step) < tol:
            converged = True
            break
    if not converged or not math.isfinite(k):
        def g_only(logk):
            return _shape_equation(math.exp(logk), logx, w, mean_log)[0]

        lo, hi = math.log(1e-3), math.log(1e4)
        if g_only(lo) > 0 or g_only(hi) < 0:
            raise EvtError("Weibull shape equation has no root in [1e-3, 1e4]")
        k = math.exp(optimize.brentq(g_only, lo, hi, xtol=1e-12))
    lmax = logx.max()
    scale = math.exp(lmax + math.log((w * np.exp(k * (logx - lmax))).sum() / wsum) / k)
    return Weibull(shape=k, scale=scale)


# ----------------------------------------------------------------------------------------------------- mixture


@dataclass(frozen=True)
class MixtureConfig:
    """How the two-component Weibull mixture is fitted.

    ``deltas``: candidate end-point offsets (fractions of the score range) for both components' locations;
    the pair with the highest likelihood wins. ``bins``: Otsu histogram bins for the initial split.
    """

    deltas: tuple[float, ...] = (0.001, 0.005, 0.02, 0.06, 0.2, 0.5)
    bins: int = 256
    max_iter: int = 300
    tol: float = 1e-8
    min_weight: float = 1e-3  # a component whose weight falls below this has collapsed
    select_sample: int = 10000  # the location grid is searched on at most this many scores (seeded subsample)
    select_iter: int = 40  # EM iterations per grid point while searching
    seed: int = 0


@dataclass
class WeibullMixture:
    """Fitted mixture on scores: ``p(s) = w_low * f_low(s) + w_high * f_high(s)``.

    ``low`` and ``high`` are :class:`Weibull` objects in *score units* (``low`` has ``sign=+1`` and its
    location below the smallest score; ``high`` has ``sign=-1`` and its location above the largest score).
    """

    low: Weibull
    high: Weibull
    weight_low: float
    weight_high: float
    score_min: float
    score_max: float
    otsu: OtsuResult
    log_likelihood: float  # total, in score units
    iterations: int
    converged: bool
    deltas: tuple[float, float]
    single_log_likelihood: float  # best single Weibull (either orientation, locations on the same grid)
    config: MixtureConfig = field(default_factory=MixtureConfig)

    @property
    def n_params(self) -> int:
        return 7  # two shapes, two scales, two locations (grid), one weight

    def pdf(self, s) -> np.ndarray:
        return self.weight_low * self.low.pdf(s) + self.weight_high * self.high.pdf(s)

    def posterior_high(self, s) -> np.ndarray:
        """P(high component | s)."""
        a = math.log(max(self.weight_low, _TINY)) + self.low.logpdf(s)
        b = math.log(max(self.weight_high, _TINY)) + self.high.logpdf(s)
        with np.errstate(invalid="ignore"):
            out = np.exp(b - np.logaddexp(a, b))
        return np.where(np.isfinite(a) | np.isfinite(b), np.nan_to_num(out, nan=0.5), 0.5)

    def bic(self, n: int) -> float:
        return -2 * self.log_likelihood + self.n_params * math.log(n)

    def single_bic(self, n: int) -> float:
        return -2 * self.single_log_likelihood + 3 * math.log(n)

    def to_dict(self) -> dict:
        return {
            "low": self.low.to_dict(),
            "high": self.high.to_dict(),
            "weight_low": self.weight_low,
            "weight_high": self.weight_high,
            "score_min": self.score_min,
            "score_max": self.score_max,
            "otsu": asdict(self.otsu),
            "log_likelihood": self.log_likelihood,
            "single_log_likelihood": self.single_log_likelihood,
            "iterations": self.iterations,
            "converged": self.converged,
            "deltas": list(self.deltas),
        }


def _em(z: np.ndarray, d0: float, d1: float, init_high: np.ndarray, cfg: MixtureConfig):
    """EM for the mixture on unit-interval scores z with fixed end-point offsets. Returns a dict."""
    x = z + d0  # low component variable (> 0)
    y = 1.0 + d1 - z  # high component variable (> 0)
    r = init_high.astype(np.float64)
    c0 = c1 = None
    ll_old = -np.inf
    converged = False
    it = 0
    for it in range(1, cfg.max_iter + 1):
        pi1 = float(r.mean())
        if pi1 < cfg.min_weight or pi1 > 1 - cfg.min_weight:
            return None
        c0 = fit_weibull(x, 1.0 - r, init_shape=None if c0 is None else c0.shape)
        c1 = fit_weibull(y, r, init_shape=None if c1 is None else c1.shape)
        a = math.log(1 - pi1) + c0.logpdf(x)
        b = math.log(pi1) + c1.logpdf(y)
        tot = np.logaddexp(a, b)
        ll = float(tot.sum())
        r = np.exp(b - tot)
        if abs(ll - ll_old) <= cfg.tol * max(1.0, abs(ll)):
            converged = True
            break
        ll_old = ll
    pi1 = float(r.mean())
    return {"c0": c0, "c1": c1, "pi1": pi1, "ll": ll, "iterations": it, "converged": converged, "r": r}


def fit_weibull_mixture(scores, config: MixtureConfig | None = None) -> WeibullMixture:
    """Fit the two-component Weibull mixture by EM, initialised from Otsu's split.

    Raises :class:`EvtError` for non-finite, constant or too-few scores, or when every start collapses to a
    single component (callers turn that into a "one mode" answer).
    """
    cfg = config or MixtureConfig()
    s = check_scores(scores, min_count=8)
    smin, smax = float(s.min()), float(s.max())
    if not smax > smin:
        raise EvtError(f"scores are constant ({smin}); no mixture can be fitted")
    rng = smax - smin
    z = (s - smin) / rng
    ot = otsu(z, bins=cfg.bins)
    init = (z >= ot.threshold).astype(np.float64)
    if init.sum() < 2 or (1 - init).sum() < 2:
        raise EvtError("Otsu's split leaves fewer than two scores on one side")
    best = None
    single_best = -np.inf
    for d in cfg.deltas:
        for orient in (0, 1):
            v = z + d if orient == 0 else 1.0 + d - z
            wb = fit_weibull(v)
            single_best = max(single_best, float(wb.logpdf(v).sum()))
    pairs = [(d0, d1) for d0 in cfg.deltas for d1 in cfg.deltas]
    if len(pairs) > 1:
        # Pick the end points with short EM runs (on a seeded subsample when there are many scores), then run EM
        # to convergence on every score with the chosen pair (and, if that collapses, with the runners-up).
        pick = np.arange(z.size)
        if z.size > cfg.select_sample:
            pick = np.random.default_rng(cfg.seed).choice(z.size, cfg.select_sample, replace=False)
        short = replace(cfg, max_iter=cfg.select_iter)
        ranked = []
        for d0, d1 in pairs:
            res = _em(z[pick], d0, d1, init[pick], short)
            if res is not None:
                ranked.append((res["ll"], d0, d1))
        ranked.sort(reverse=True)
        pairs = [(d0, d1) for _, d0, d1 in ranked] or pairs
    for d0, d1 in pairs:
        res = _em(z, d0, d1, init, cfg)
        if res is None:
            continue
        best = (res, d0, d1)
        break
    if best is None:
        raise EvtError("the two-component fit collapsed to a single component from every start")
    res, d0, d1 = best
    c0, c1 = res["c0"], res["c1"]
    log_jac = s.size * math.log(rng)  # density in score units = density in z units / range
    low = Weibull(shape=c0.shape, scale=c0.scale * rng, loc=smin - d0 * rng, sign=1)
    high = Weibull(shape=c1.shape, scale=c1.scale * rng, loc=smax + d1 * rng, sign=-1)
    return WeibullMixture(
        low=low,
        high=high,
        weight_low=1.0 - res["pi1"],
        weight_high=res["pi1"],
        score_min=smin,
        score_max=smax,
        otsu=OtsuResult(
            threshold=smin + ot.threshold * rng,
            separability=ot.separability,
            low_fraction=ot.low_fraction,
            bins=ot.bins,
        ),
        log_likelihood=res["ll"] - log_jac,
        iterations=res["iterations"],
        converged=res["converged"],
        deltas=(d0, d1),
        single_log_likelihood=single_best - log_jac,
        config=cfg,
    )

