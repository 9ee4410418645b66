"""A clustering method's settings checked before a run starts: each value against the type its parameter is
declared with and the range it can take, so that a bad value is refused with a reason when the run is asked
for, not found by a worker minutes later."""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable

NOT_SETTINGS = {"emb", "progress", "graph", "cache_dir"}

# (lowest, highest) a setting can take, by name; None: no bound on that side.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "k": (1, 1000),  # neighbours in the kNN graph
    "threshold": (-1.0, 1.0), "attach_sim": (-1.0, 1.0), "link_sim": (-1.0, 1.0),  # cosines
    "distance": (0.0, 2.0), "eps": (0.0, 2.0), "attach_margin": (0.0, 2.0),  # cosine distances
    "min_score": (0.0, 1.0), "min_prob": (0.0, 1.0),  # probabilities
    "shrink": (0.0, None), "power": (0.0, None),
    "num_trials": (1, 100), "min_samples": (1, None), "max_size": (1, None), "max_n": (2, None),
    "n_clusters": (1, None), "faces_per_cluster": (1.0, None), "batch_size": (1, None), "max_iter": (1, None),
    "seed": (0, None),
}


def settings(func: Callable) -> dict[str, inspect.Parameter]:
    """The settings a clustering function takes (its keyword parameters but the data and the plumbing)."""
    return {n: p for n, p in inspect.signature(func).parameters.items() if n not in NOT_SETTINGS}


def check_params(func: Callable, params: dict[str, Any]) -> list[str]:
    """Why each of ``params`` cannot be given to ``func`` (an unknown name, a wrong type, out of range); [] when
    every one can."""
    known = settings(func)
    unknown = sorted(set(params) - set(known))
    if unknown:
        return [f"no setting {', '.join(unknown)}; its settings: {', '.join(sorted(known))}"]
    return [e for key, value in params.items() for e in [_check(key, value, str(known[key].annotation))] if e]


def _check(key: str, value: Any, annotation: str) -> str | None:
    if value is None:
        return None if "None" in annotation or annotation == "Any" else f"{key} needs a value"
    if "bool" in annotation:
        return None if isinstance(value, bool) else f"{key} must be true or false, got {value!r}"
    if "int" in annotation or "float" in annotation:
        return _number(key, value, whole="float" not in annotation)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return f"{key} must be a number, a short string or a boolean, got {value!r}"
    if isinstance(value, str) and len(value) > 200:
        return f"{key} is too long ({len(value)} characters)"
    return None


def _number(key: str, value: Any, whole: bool) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{key} must be a number, got {value!r}"
    if whole and value != int(value):
        return f"{key} must be a whole number, got {value!r}"
    lo, hi = RANGES.get(key, (None, None))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f"between {lo:g} and {hi:g}" if lo is not None and hi is not None else \
            (f"at least {lo:g}" if lo is not None else f"at most {hi:g}")
        return f"{key} must be {span}, got {value!r}"
    return None
