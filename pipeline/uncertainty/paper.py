"""The paper's literal p- (Sec. 3.3): Otsu split of the margins, a Weibull fitted to the low mode, p- = its
survival function at the face's margin. Available as ``PMinusConfig(method="paper")``.

p- is computed from a margin ``u`` in [0, 1]: the paper's top-2 class margin (``PMinusConfig.margin_kind='top2'``)
or ``u = (1 + assigned_margin) / 2`` (``'assigned'``). Otsu's threshold splits the distribution of ``u`` into a low
mode and a high mode; a two-parameter Weibull ``W_wrong`` (location 0) is fitted by maximum likelihood to the
values below the threshold, and

    p-(u) = W_wrong.sf(u) = exp(-(u / scale) ** shape)

Known defects, measured (bench/results/uncertainty.md): this is not a probability of being wrongly clustered.
The Weibull is fitted to a sample truncated at Otsu's threshold with no allowance for the cut, and every face
above the threshold still gets the survival function of the *wrong* population at its margin; on LFW a third of
the faces get p- around 0.6 while a few percent are wrong. The calibrated default is in
:mod:`pipeline.uncertainty.calibrated`.

Degenerate input (fewer than ``min_faces`` margins, constant margins, fewer than ``min_wrong_faces`` margins in
the low mode) is reported in ``PMinusFit.degenerate`` and p- is NaN -- never a silent guess.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.overlap.evt import EvtError, OtsuResult, Weibull, fit_weibull, otsu

P_MINUS_METHODS = ("calibrated", "mixture", "paper")


@dataclass(frozen=True)
class PMinusConfig:
    bins: int = 256
    min_faces: int = 50
    min_wrong_faces: int = 10
    floor: float = 1e-6  # margins are clipped to at least this before the Weibull fit (support x > 0)
    confidence: float = 0.95
    hist_bins: int = 60
    margin_kind: str = "assigned"  # 'assigned': (1 + assigned_margin) / 2; 'top2': the paper's top-1 - top-2
    # which p- clustering_uncertainty returns: 'calibrated' (shipped logistic model, the default), 'mixture'
    # (posterior of the two-component Weibull mixture) or 'paper' (Otsu + Weibull sf of the low mode, literal)
    method: str = "calibrated"
    calibration: str | None = None  # calibrator JSON for method='calibrated' (None: the shipped one)

    def __post_init__(self):
        if self.margin_kind not in ("assigned", "top2"):
            raise ValueError("margin_kind must be 'assigned' or 'top2'")
        if self.method not in P_MINUS_METHODS:
            raise ValueError(f"method must be one of {P_MINUS_METHODS}, got {self.method!r}")


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
