"""Is a retrained version better than its parent? The verdict weighs the new domain first.

A retraining is for the domain its runs came from, so the verdict is read off a **domain benchmark**:
the labeled evaluation datasets named in the request (``eval_datasets``: labeled faces of the new
domain) when there are any, else the run's own held-out pseudo-identities (``held_out_pseudo``: whole
clusters the job held out before training). The labeled held-out identities and LFW pairs are
**guards** (nothing forgotten), never enough on their own:

* ``better``: the domain metric went up by more than ``MIN_DOMAIN_GAIN`` and no guard fell by more
  than its tolerance;
* ``not_better``: the domain metric did not go up, or a guard fell too far;
* ``unknown``: no domain benchmark could be scored (no run, too few held-out clusters, ...).

The metric of a benchmark is TAR at FAR 1e-3 where both versions have it, else rank-1. The verdict
and every number behind it go to ``version.verdict`` / ``version.verdict_detail``.
"""
from __future__ import annotations

from typing import Any

DOMAIN_BENCHMARKS = ("eval_datasets", "held_out_pseudo")
MIN_DOMAIN_GAIN = 0.0
GUARDS = {"held_out_identities": 0.02, "lfw_pairs": 0.003}  # largest drop allowed
METRICS = ("tar@far=0.001", "rank1", "lfw_mean")


def _pair(bench: dict, parent_id: int, new_id: int) -> dict | None:
    """{metric, parent, new, delta} of the first metric both versions have; None when skipped."""
    if not bench or "skipped" in bench:
        return None
    versions = bench.get("versions") or {}
    a, b = versions.get(str(parent_id)) or {}, versions.get(str(new_id)) or {}
    for m in METRICS:
        if a.get(m) is not None and b.get(m) is not None:
            return {"metric": m, "parent": a[m], "new": b[m], "delta": round(b[m] - a[m], 6)}
    return None


def verdict(benchmarks: dict, parent_id: int, new_id: int) -> tuple[str, dict[str, Any]]:
    """(verdict, detail) from a version's stored benchmarks (see the module docstring)."""
    detail: dict[str, Any] = {"rule": f"domain metric up by more than {MIN_DOMAIN_GAIN}, no guard down by more "
                                      f"than its tolerance {GUARDS}", "domain": None, "guards": {}, "reasons": []}
    for name in DOMAIN_BENCHMARKS:
        pair = _pair(benchmarks.get(name) or {}, parent_id, new_id)
        if pair is not None:
            detail["domain"] = {"benchmark": name, **pair}
            break
    for name, tol in GUARDS.items():
        pair = _pair(benchmarks.get(name) or {}, parent_id, new_id)
        if pair is not None:
            detail["guards"][name] = {**pair, "tolerance": tol, "ok": pair["delta"] >= -tol}
    if detail["domain"] is None:
        detail["reasons"].append("no domain benchmark scored (name eval_datasets, or give runs with enough "
                                 "clusters to hold some out)")
        return "unknown", detail
    if detail["domain"]["delta"] <= MIN_DOMAIN_GAIN:
        d = detail["domain"]
        detail["reasons"].append(f"{d['benchmark']} {d['metric']}: {d['parent']:.4f} -> {d['new']:.4f}")
    for name, g in detail["guards"].items():
        if not g["ok"]:
            detail["reasons"].append(f"{name} {g['metric']} fell {-g['delta']:.4f} (tolerance {g['tolerance']})")
    return ("not_better" if detail["reasons"] else "better"), detail
