"""The paper's Fig. 3 (overlap max-logits) and Fig. 4c (class margins) drawn from a report dict / JSON.

Both reports (``pipeline.overlap.separation.separate_overlap(...).report`` and ``pipeline.uncertainty`` reports) carry the
same keys, so one function draws either:

- ``histogram``: ``edges``, ``density`` (the score histogram);
- ``curves`` (optional): ``x`` and per-component weighted Weibull densities (``disjoint``/``overlap`` or
  ``wrong``) and ``mixture``;
- ``thresholds``: named vertical lines (``otsu`` is drawn dashed black, the Weibull thresholds dotted);
- ``labels``: axis name and component names; ``degenerate`` / ``message`` for the title.

The web UI can draw the same numbers from the JSON.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_COLORS = {"disjoint": "tab:blue", "overlap": "tab:orange", "wrong": "tab:red", "mixture": "black"}
_LINE_STYLE = {
    "otsu": ("black", "--", "Otsu"),
    "disjoint_upper": ("tab:blue", ":", "disjoint 95% quantile"),
    "overlap_lower": ("tab:orange", ":", "overlap 5% quantile"),
    "wrong_upper": ("tab:red", ":", "wrong-mode 95% quantile"),
}


def plot_report(report: dict, path: str | Path, *, title: str | None = None, logy: bool = False) -> Path:
    """Draw the histogram, Otsu line, fitted Weibull densities and thresholds of ``report`` to a PNG."""
    if not isinstance(report, dict) or "histogram" not in report:
        raise ValueError("report must be a dict with a 'histogram' (from separate_overlap or uncertainty)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = report.get("labels") or {}
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    hist = report.get("histogram")
    if hist:
        edges = hist["edges"]
        widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
        ax.bar(edges[:-1], hist["density"], width=widths, align="edge", color="0.8", edgecolor="0.6",
               linewidth=0.4, label="scores")
    curves = report.get("curves")
    if curves:
        for key, values in curves.items():
            if key == "x":
                continue
            style = "-" if key != "mixture" else "--"
            ax.plot(curves["x"], values, style, color=_COLORS.get(key, None), lw=1.6 if key != "mixture" else 1.0,
                    label=f"Weibull: {key}" if key != "mixture" else "mixture")
    for name, value in (report.get("thresholds") or {}).items():
        if name not in _LINE_STYLE or value is None:
            continue
        color, ls, text = _LINE_STYLE[name]
        ax.axvline(value, color=color, ls=ls, lw=1.3, label=f"{text} = {value:.3f}")
    ax.set_xlabel(labels.get("x", "score"))
    ax.set_ylabel("density")
    if logy:
        ax.set_yscale("log")
    if title is None:
        kind = report.get("kind", "")
        title = {"overlap": "Overlap separation (max-logit, Fig. 3)",
                 "uncertainty": "Clustering uncertainty (class margin, Fig. 4c)"}.get(kind, kind)
        if report.get("degenerate"):
            title += f" -- degenerate: {report['degenerate']}"
    ax.set_title(title, fontsize=10)
    counts = report.get("counts")
    if counts:
        ax.text(0.99, 0.97, "\n".join(f"{k}: {v}" for k, v in counts.items()), transform=ax.transAxes,
                ha="right", va="top", fontsize=8, bbox={"fc": "white", "ec": "0.7"})
    ax.legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
