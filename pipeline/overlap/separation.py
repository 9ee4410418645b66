"""Overlap separation (paper Sec. 3.1): which unlabeled faces belong to identities the recognizer already knows.

Input: per unlabeled face the max-logit over the labeled classes (cosine logits in ``[-1, 1]`` from
``pipeline.recognition.models.max_logit_and_argmax``, or any score where higher means "more like a labeled class") and
the arg-max class.

Method
------
1. Otsu's threshold on the max-logits gives the initial split (:func:`pipeline.overlap.evt.otsu`).
2. A two-component Weibull mixture is fitted by EM (:func:`pipeline.overlap.evt.fit_weibull_mixture`): the *disjoint*
   component ``W_d`` is the low mode, a Weibull of the distance above a lower end point; the *overlap*
   component ``W_o`` is the high mode, a Weibull of the distance below an upper end point (mirrored, skewed
   towards low scores). Scores may be negative: they are mapped to ``[0, 1]`` by min-max and the two end
   points are fitted (see pipeline/evt.py), so a positive affine change of the scores changes nothing.
3. Thresholds at ``confidence`` (default 95 %) under each Weibull:

   - ``t_d = W_d.ppf(confidence)``: 95 % of disjoint faces score below it, so a score above it is
     implausible for a disjoint face at the 5 % level;
   - ``t_o = W_o.ppf(1 - confidence)``: 95 % of overlap faces score above it, so a score below it is
     implausible for an overlap face at the 5 % level.

   A face is **overlap** when it is implausible as disjoint and plausible as overlap
   (``s > t_d`` and ``s >= t_o``, i.e. ``s >= max(t_d, t_o)`` -- strictly above ``t_d``);
   **disjoint** when it is implausible as overlap and plausible as disjoint (``s < t_o`` and ``s <= t_d``);
   **rejected** otherwise. When the modes are well apart (``t_d < t_o``) the rejected band ``(t_d, t_o)``
   holds faces implausible under both; when they overlap (``t_o < t_d``) the band ``[t_o, t_d]`` holds faces
   plausible under both. Either way rejected faces are left out of later steps.
4. Overlap faces keep their arg-max labeled class (``label``), so a later step can merge them into it.

Degenerate input gets an explicit answer in ``OverlapResult.degenerate`` (and every face ``rejected``) instead of
a guess: fewer than ``min_faces`` faces (``"too_few"``), constant scores (``"constant"``), or a single mode
(``"one_mode"``: no overlap at all, or everything overlapping -- the scores alone cannot tell which, unless
``one_mode_threshold`` gives an absolute score above which a lone mode counts as overlap). One mode is declared
when the two-component fit collapses, when a component holds under ``min_component_faces`` faces, when the
mixture does not beat a single Weibull by ``min_bic_gain`` in BIC, or when the fitted mixture density has no dip
between its two component modes (``max_dip_ratio``). NaN or infinite scores raise ``ValueError`` by default;
with ``nonfinite="reject"`` they are rejected and the rest is fitted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.overlap.evt import EvtError, MixtureConfig, WeibullMixture, fit_weibull_mixture, otsu

DISJOINT, OVERLAP, REJECTED = 0, 1, -1
STATE_NAMES = {DISJOINT: "disjoint", OVERLAP: "overlap", REJECTED: "rejected"}

__all__ = [
    "DISJOINT",
    "OVERLAP",
    "REJECTED",
    "STATE_NAMES",
    "OverlapConfig",
    "OverlapResult",
    "separate_overlap",
    "otsu_states",
    "state_names",
    "score_histogram",
]


@dataclass(frozen=True)
class OverlapConfig:
    confidence: float = 0.95
    min_faces: int = 50
    min_component_faces: int = 10
    min_bic_gain: float = 10.0
    max_dip_ratio: float = 0.9
    one_mode_threshold: float | None = None
    nonfinite: str = "raise"  # or "reject"
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    hist_bins: int = 60

    def __post_init__(self):
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0.5, 1), got {self.confidence}")
        if self.nonfinite not in ("raise", "reject"):
            raise ValueError("nonfinite must be 'raise' or 'reject'")
        if self.min_faces < 8:
            raise ValueError("min_faces must be at least 8")


@dataclass
class OverlapResult:
    state: np.ndarray  # (N,) int8: 1 overlap, 0 disjoint, -1 rejected
    label: np.ndarray  # (N,) int64: the arg-max labeled class for overlap faces, -1 otherwise
    posterior: np.ndarray  # (N,) float32: P(overlap mode | score) under the mixture; NaN when degenerate
    thresholds: dict[str, float | None]
    mixture: WeibullMixture | None
    report: dict[str, Any]
    degenerate: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {name: int(np.sum(self.state == code)) for code, name in STATE_NAMES.items()}


def state_names(state: np.ndarray) -> np.ndarray:
    """int state codes -> str names."""
    out = np.full(state.shape, "rejected", dtype="<U8")
    out[state == OVERLAP] = "overlap"
    out[state == DISJOINT] = "disjoint"
    return out


def score_histogram(scores: np.ndarray, bins: int, lo: float | None = None, hi: float | None = None) -> dict:
    """Density histogram as plain lists, for the report JSON."""
    lo = float(np.min(scores)) if lo is None else lo
    hi = float(np.max(scores)) if hi is None else hi
    if not hi > lo:
        hi = lo + 1e-6
    counts, edges = np.histogram(scores, bins=bins, range=(lo, hi))
    width = edges[1] - edges[0]
    density = counts / max(counts.sum() * width, 1e-300)
    return {"edges": edges.tolist(), "counts": counts.astype(int).tolist(), "density": density.tolist()}


def _dip_ratio(mix: WeibullMixture) -> float:
    """min mixture density between the two component modes / smaller of the densities at those modes.

    1.0 (no dip) when the low component's mode is not below the high component's mode.
    """
    lo_edge = mix.score_min + 1e-9 * (mix.score_max - mix.score_min)
    hi_edge = mix.score_max - 1e-9 * (mix.score_max - mix.score_min)
    m0 = float(np.clip(mix.low.mode(), lo_edge, hi_edge))
    m1 = float(np.clip(mix.high.mode(), lo_edge, hi_edge))
    if m0 >= m1:
        return 1.0
    grid = np.linspace(m0, m1, 513)
    dens = mix.pdf(grid)
    peak = min(dens[0], dens[-1])
    if not peak > 0:
        return 1.0
    return float(min(dens.min() / peak, 1.0))


def _degenerate(
    scores: np.ndarray, finite: np.ndarray, argmax: np.ndarray, reason: str, detail: str, cfg: OverlapConfig,
    extra: dict | None = None,
) -> OverlapResult:
    n = scores.shape[0]
    state = np.full(n, REJECTED, dtype=np.int8)
    decided_as = None
    if reason == "one_mode" and cfg.one_mode_threshold is not None:
        med = float(np.median(scores[finite]))
        decided_as = "overlap" if med >= cfg.one_mode_threshold else "disjoint"
        state[finite] = OVERLAP if decided_as == "overlap" else DISJOINT
        detail += (
            f"; median score {med:.4g} vs one_mode_threshold {cfg.one_mode_threshold:.4g}: "
            f"the single mode is taken as {decided_as}"
        )
    label = np.where(state == OVERLAP, argmax, -1).astype(np.int64)
    fs = scores[finite]
    report = {
        "kind": "overlap",
        "n": int(n),
        "degenerate": reason,
        "message": detail,
        "one_mode_decision": decided_as,
        "config": _config_dict(cfg),
        "histogram": score_histogram(fs, cfg.hist_bins) if fs.size else None,
        "thresholds": {},
        "curves": None,
        "mixture": None,
        "counts": {STATE_NAMES[c]: int(np.sum(state == c)) for c in STATE_NAMES},
        "nonfinite": int((~finite).sum()),
    }
    if extra:
        report.update(extra)
    return OverlapResult(
        state=state,
        label=label,
        posterior=np.full(n, np.nan, dtype=np.float32),
        thresholds={},
        mixture=None,
        report=report,
        degenerate=reason,
    )


def _config_dict(cfg: OverlapConfig) -> dict:
    d = asdict(cfg)
    d["mixture"]["deltas"] = list(d["mixture"]["deltas"])
    return d


def _check_scores(max_logit, argmax, cfg: OverlapConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores (N,) float64, argmax (N,) int64, finite (N,) bool); non-finite scores raise unless rejected."""
    scores = np.asarray(max_logit)
    if scores.ndim != 1:
        raise ValueError(f"max_logit must be a 1-D array, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating) and not np.issubdtype(scores.dtype, np.integer):
        raise ValueError(f"max_logit must be numeric, got {scores.dtype}")
    scores = scores.astype(np.float64)
    am = np.asarray(argmax)
    if am.shape != scores.shape:
        raise ValueError(f"argmax must have shape {scores.shape}, got {am.shape}")
    if am.size and not np.issubdtype(am.dtype, np.integer):
        raise ValueError(f"argmax must be integer class indices, got {am.dtype}")
    finite = np.isfinite(scores)
    if not finite.all() and cfg.nonfinite == "raise":
        raise ValueError(
            f"max_logit contains {int((~finite).sum())} NaN or infinite values (first at index "
            f"{int(np.flatnonzero(~finite)[0])}); fix the scores or pass nonfinite='reject' to leave those faces out"
        )
    return scores, am.astype(np.int64), finite


def _two_modes_or_why(mix, n: int, cfg: OverlapConfig) -> tuple[dict, list[str]]:
    """The mixture's diagnostics, and the reasons (if any) to take it as one mode only."""
    n_low, n_high = mix.weight_low * n, mix.weight_high * n
    bic_gain = mix.single_bic(n) - mix.bic(n)
    dip = _dip_ratio(mix)
    diag = {"bic_gain": float(bic_gain), "dip_ratio": float(dip),
            "expected_faces": {"disjoint": float(n_low), "overlap": float(n_high)},
            "otsu_separability": mix.otsu.separability}
    why = []
    if min(n_low, n_high) < cfg.min_component_faces:
        why.append(f"a mode holds only {min(n_low, n_high):.1f} faces (< {cfg.min_component_faces})")
    if bic_gain < cfg.min_bic_gain:
        why.append(f"two modes beat one Weibull by only {bic_gain:.1f} BIC (< {cfg.min_bic_gain})")
    if dip > cfg.max_dip_ratio:
        why.append(f"the fitted density has no dip between the modes (dip ratio {dip:.3f} > {cfg.max_dip_ratio})")
    return diag, why


def _thresholds(mix, c: float) -> dict[str, float]:
    t_d = float(mix.low.ppf(c))  # e.g. the 95th percentile of the disjoint mode
    t_o = float(mix.high.ppf(1 - c))  # and the 5th percentile of the overlap mode
    return {"otsu": mix.otsu.threshold, "disjoint_upper": t_d, "overlap_lower": t_o,
            "overlap_at_or_above": max(t_d, t_o), "disjoint_at_or_below": min(t_d, t_o)}


def _two_mode_report(mix, fs: np.ndarray, state: np.ndarray, finite: np.ndarray, thresholds: dict, diag: dict,
                     cfg: OverlapConfig) -> dict:
    c, hi, lo = cfg.confidence, thresholds["overlap_at_or_above"], thresholds["disjoint_at_or_below"]
    otsu_overlap = int(np.sum(fs >= mix.otsu.threshold))
    grid = np.linspace(mix.score_min, mix.score_max, 400)
    return {
        "kind": "overlap", "n": int(state.shape[0]), "degenerate": None,
        "message": (f"overlap if score >= {hi:.4f} (above the {c:.0%} quantile of the disjoint Weibull and the "
                    f"{1 - c:.0%} quantile of the overlap Weibull), disjoint if score <= {lo:.4f}, rejected between"),
        "config": _config_dict(cfg), "histogram": score_histogram(fs, cfg.hist_bins), "thresholds": thresholds,
        "curves": {"x": grid.tolist(), "disjoint": (mix.weight_low * mix.low.pdf(grid)).tolist(),
                   "overlap": (mix.weight_high * mix.high.pdf(grid)).tolist(), "mixture": mix.pdf(grid).tolist()},
        "mixture": mix.to_dict(), "diagnostics": diag,
        "counts": {STATE_NAMES[k]: int(np.sum(state == k)) for k in STATE_NAMES},
        "otsu_counts": {"overlap": otsu_overlap, "disjoint": int(fs.size - otsu_overlap)},
        "nonfinite": int((~finite).sum()), "labels": {"x": "max-logit", "low": "disjoint", "high": "overlap"},
    }


def separate_overlap(
    max_logit, argmax, config: OverlapConfig | None = None
) -> OverlapResult:
    """Split unlabeled faces into overlap / disjoint / rejected from their max-logits (see module docstring).

    ``max_logit``: (N,) float scores; ``argmax``: (N,) int arg-max labeled class per face.
    """
    cfg = config or OverlapConfig()
    scores, am, finite = _check_scores(max_logit, argmax, cfg)
    fs = scores[finite]
    if fs.size < cfg.min_faces:
        return _degenerate(
            scores, finite, am, "too_few",
            f"{fs.size} faces with finite scores; at least {cfg.min_faces} are needed to fit two Weibull modes", cfg,
        )
    if not fs.max() > fs.min():
        return _degenerate(scores, finite, am, "constant", f"every score equals {fs[0]:.6g}", cfg)
    try:
        mix = fit_weibull_mixture(fs, cfg.mixture)
    except EvtError as exc:
        return _degenerate(scores, finite, am, "one_mode", f"two-component fit failed: {exc}", cfg)
    diag, why = _two_modes_or_why(mix, fs.size, cfg)
    if why:
        return _degenerate(scores, finite, am, "one_mode", "one mode only: " + "; ".join(why), cfg,
                           extra={"diagnostics": diag, "mixture": mix.to_dict()})
    thresholds = _thresholds(mix, cfg.confidence)
    t_d, t_o = thresholds["disjoint_upper"], thresholds["overlap_lower"]
    state = np.full(scores.shape[0], REJECTED, dtype=np.int8)
    fin_idx = np.flatnonzero(finite)
    state[fin_idx[(fs > t_d) & (fs >= t_o)]] = OVERLAP
    state[fin_idx[(fs < t_o) & (fs <= t_d)]] = DISJOINT
    label = np.where(state == OVERLAP, am, -1).astype(np.int64)
    post = np.full(scores.shape[0], np.nan, dtype=np.float32)
    post[finite] = mix.posterior_high(fs).astype(np.float32)
    report = _two_mode_report(mix, fs, state, finite, thresholds, diag, cfg)
    return OverlapResult(
        state=state, label=label, posterior=post, thresholds=thresholds, mixture=mix, report=report, degenerate=None
    )


def otsu_states(max_logit, bins: int = 256) -> np.ndarray:
    """Otsu alone (the paper's baseline): overlap if score >= Otsu's threshold, else disjoint."""
    s = np.asarray(max_logit, dtype=np.float64)
    t = otsu(s, bins=bins).threshold
    return np.where(s >= t, OVERLAP, DISJOINT).astype(np.int8)

