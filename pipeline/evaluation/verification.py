"""Evaluation of face features: LFW verification, TAR at FAR, closed-set identification, reports.

All metrics are pure NumPy over a FeatureSet (L2-normalised embeddings, so a dot product is
the cosine similarity) and check their inputs.

- ``lfw_verification``: the official LFW View 2 protocol. ``pairs.txt`` holds 10 folds of 300
  same + 300 different pairs; for each fold the threshold that maximises accuracy on the other
  9 folds is applied to it; mean and standard deviation of the 10 fold accuracies.
- ``tar_at_far``: all genuine / impostor pairs among the labeled faces. The threshold for a FAR
  target is the exact k-th largest impostor score (k = floor(FAR * #impostors)); scores are
  streamed in row blocks so tens of millions of pairs fit in memory.
- ``identification``: per identity with >= 2 faces, ``gallery_per_id`` seeded faces form the
  gallery template (their normalised mean), the rest are probes; identities with one face join
  the gallery as distractors; rank-k = fraction of probes whose identity is among the k most
  similar templates.
- ``evaluate_features`` -> report dict; ``write_report`` -> JSON + ROC PNG; ``compare_reports``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.features import FeatureSet, atomic_path, check_embeddings

DEFAULT_FARS = (1e-3, 1e-4)
REPORT_FORMAT = 1
# Similarity histogram for ROC curves: 8000 bins over [-1, 1].
_BINS = np.linspace(-1.0, 1.0, 8001)


# --------------------------------------------------------------------------- LFW pairs
def read_lfw_pairs(pairs_path: str | Path) -> list[tuple[str, str, bool, int]]:
    """Parse LFW ``pairs.txt`` (View 2) into (relpath1, relpath2, same, fold) with relpaths like
    ``Name/Name_0001.jpg``."""
    lines = [ln.split() for ln in Path(pairs_path).read_text().splitlines() if ln.strip()]
    if not lines or len(lines[0]) != 2:
        raise ValueError(f"{pairs_path}: the first line must be '<folds> <pairs per class>'")
    folds, per = int(lines[0][0]), int(lines[0][1])
    body = lines[1:]
    if len(body) != folds * 2 * per:
        raise ValueError(f"{pairs_path}: expected {folds * 2 * per} pairs for '{folds} {per}', got {len(body)}")

    def rel(name: str, idx: str) -> str:
        return f"{name}/{name}_{int(idx):04d}.jpg"

    out = []
    for i, parts in enumerate(body):
        fold = i // (2 * per)
        if len(parts) == 3:
            out.append((rel(parts[0], parts[1]), rel(parts[0], parts[2]), True, fold))
        elif len(parts) == 4:
            out.append((rel(parts[0], parts[1]), rel(parts[2], parts[3]), False, fold))
        else:
            raise ValueError(f"{pairs_path}: line {i + 2} is not a pair: {' '.join(parts)!r}")
    return out


def _tail(path: str) -> str:
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:])


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Threshold maximising accuracy of ``score > t`` == ``same``; (threshold, accuracy). Exact search."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], same[order]
    n = len(s)
    # Cut after position i (predict "same" for i+1..n-1): correct = negatives at or below + positives above.
    neg_below = np.concatenate([[0], np.cumsum(~y)])
    pos_above = np.concatenate([[y.sum()], y.sum() - np.cumsum(y)])
    correct = neg_below + pos_above  # index c = number of samples predicted "different"
    # Only cut between distinct scores.
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = s[1:] != s[:-1]
    correct = np.where(valid, correct, -1)
    c = int(np.argmax(correct))
    if c == 0:
        t = s[0] - 1e-6
    elif c == n:
        t = s[-1] + 1e-6
    else:
        t = (s[c - 1] + s[c]) / 2.0
    return float(t), float(correct[c] / n)


def lfw_verification(
    features: FeatureSet, pairs_path: str | Path, *, allow_missing: bool = False
) -> dict[str, Any]:
    """The LFW protocol on ``features`` (matched to pairs by the ``Name/Name_NNNN.jpg`` tail of ``paths``)."""
    pairs = read_lfw_pairs(pairs_path)
    index = {_tail(p): i for i, p in enumerate(features.paths)}
    rows, missing = [], 0
    for a, b, same, fold in pairs:
        ia, ib = index.get(a), index.get(b)
        if ia is None or ib is None:
            missing += 1
            continue
        rows.append((ia, ib, same, fold))
    if missing and not allow_missing:
        raise ValueError(f"{missing} of {len(pairs)} LFW pairs have a face missing from the feature set "
                         "(pass allow_missing=True to score the rest)")
    if not rows:
        raise ValueError("no LFW pair found in the feature set")
    ia, ib, same, fold = (np.asarray(c) for c in zip(*rows))
    same = same.astype(bool)
    emb = features.embeddings
    scores = np.einsum("ij,ij->i", emb[ia], emb[ib]).astype(np.float64)
    folds = sorted(set(fold.tolist()))
    accs, thresholds = [], []
    for f in folds:
        test = fold == f
        t, _ = best_threshold(scores[~test], same[~test])
        accs.append(float(((scores[test] > t) == same[test]).mean()))
        thresholds.append(t)
    accs_arr = np.asarray(accs)
    far, tar = roc_from_scores(scores[same], scores[~same])
    return {
        "mean": float(accs_arr.mean()), "std": float(accs_arr.std()), "folds": accs,
        "thresholds": thresholds, "num_pairs": int(len(rows)), "num_missing": int(missing),
        "auc": float(np.trapezoid(tar, far)) if len(far) > 1 else float("nan"),
        "roc": {"far": far.tolist(), "tar": tar.tolist()},
    }


# --------------------------------------------------------------------------- ROC / TAR@FAR
def roc_from_scores(genuine: np.ndarray, impostor: np.ndarray, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR), FAR ascending, at ``points`` thresholds log-spaced in FAR from 1/#impostors to 1."""
    genuine, impostor = np.sort(np.asarray(genuine)), np.sort(np.asarray(impostor))
    if not len(genuine) or not len(impostor):
        raise ValueError("need at least one genuine and one impostor score")
    fars = np.unique(np.concatenate([np.logspace(math.log10(1.0 / len(impostor)), 0, points), [1.0]]))
    k = np.clip(np.floor(fars * len(impostor)).astype(int), 0, len(impostor))
    thr = np.where(k > 0, impostor[len(impostor) - np.maximum(k, 1)], np.inf)
    far = (len(impostor) - np.searchsorted(impostor, thr, side="left")) / len(impostor)  # score >= thr
    tar = (len(genuine) - np.searchsorted(genuine, thr, side="left")) / len(genuine)
    return far, tar


def _label_ids(features: FeatureSet) -> np.ndarray:
    if features.labels is None:
        raise ValueError("this metric needs a labeled feature set")
    return np.unique(features.labels, return_inverse=True)[1].astype(np.int64)


def pair_scores(
    embeddings: np.ndarray, labels: np.ndarray, *, top_impostors: int, block: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Stream all i<j pairs: (genuine scores, the ``top_impostors`` largest impostor scores sorted
    descending, impostor histogram over ``_BINS``, impostor count)."""
    emb = check_embeddings(embeddings)
    labels = np.asarray(labels)
    if labels.shape != (len(emb),):
        raise ValueError(f"labels must have shape ({len(emb)},), got {labels.shape}")
    n = len(emb)
    genuine: list[np.ndarray] = []
    top = np.empty(0, np.float32)
    hist = np.zeros(len(_BINS) - 1, np.int64)
    n_imp = 0
    for s in range(0, n, block):
        e = min(n, s + block)
        sims = emb[s:e] @ emb[s:].T  # (b, n - s)
        rows = np.arange(s, e)[:, None]
        cols = np.arange(s, n)[None, :]
        upper = cols > rows
        same = labels[s:e, None] == labels[None, s:]
        genuine.append(sims[upper & same])
        imp = sims[upper & ~same]
        n_imp += imp.size
        hist += np.histogram(np.clip(imp, -1, 1), _BINS)[0]
        if top_impostors > 0 and imp.size:
            cand = np.concatenate([top, imp])
            if cand.size > top_impostors:
                cand = np.partition(cand, cand.size - top_impostors)[-top_impostors:]
            top = cand
    return np.concatenate(genuine) if genuine else np.empty(0, np.float32), np.sort(top)[::-1], hist, n_imp


def tar_at_far(
    features: FeatureSet, fars: Sequence[float] = DEFAULT_FARS, *, roc_points: int = 200
) -> dict[str, Any]:
    """TAR at each FAR over all genuine / impostor pairs of a labeled feature set."""
    ids = _label_ids(features)
    fars = [float(f) for f in fars]
    if any(not 0 < f < 1 for f in fars):
        raise ValueError(f"FAR targets must lie in (0, 1), got {fars}")
    n = len(ids)
    n_pairs = n * (n - 1) // 2
    k_max = int(max(fars) * n_pairs) + 2
    genuine, top, hist, n_imp = pair_scores(features.embeddings, ids, top_impostors=k_max)
    if not len(genuine) or not n_imp:
        raise ValueError("TAR at FAR needs at least one genuine and one impostor pair")
    genuine = np.sort(genuine)
    out: dict[str, Any] = {"num_genuine": int(len(genuine)), "num_impostor": int(n_imp), "tar": {}, "threshold": {}}
    for f in fars:
        k = int(math.floor(f * n_imp))
        key = f"{f:g}"
        if k < 1:
            out["tar"][key] = None  # too few impostor pairs to measure this FAR
            out["threshold"][key] = None
            continue
        thr = float(top[k - 1])  # FAR = #(impostor > thr) / n_imp <= f
        out["threshold"][key] = thr
        out["tar"][key] = float((len(genuine) - np.searchsorted(genuine, thr, side="right")) / len(genuine))
    # ROC: impostor tail exact from `top`, the rest from the histogram.
    cum_imp = np.cumsum(hist[::-1])[::-1]  # impostors >= bin lower edge
    edges = _BINS[:-1]
    gen_above = len(genuine) - np.searchsorted(genuine, edges, side="left")
    far_h, tar_h = cum_imp / n_imp, gen_above / len(genuine)
    kk = np.unique(np.clip(np.logspace(0, math.log10(max(1, len(top))), roc_points).astype(int), 1, len(top)))
    thr_t = top[kk - 1]
    far_t = kk / n_imp
    tar_t = (len(genuine) - np.searchsorted(genuine, thr_t, side="left")) / len(genuine)
    far = np.concatenate([far_t, far_h[far_h > far_t.max()]])
    tar = np.concatenate([tar_t, tar_h[far_h > far_t.max()]])
    order = np.argsort(far, kind="stable")
    keep = np.unique(far[order], return_index=True)[1]
    sel = order[keep]
    if len(sel) > 2 * roc_points:
        sel = sel[np.unique(np.geomspace(1, len(sel), 2 * roc_points).astype(int) - 1)]
    out["roc"] = {"far": far[sel].tolist(), "tar": tar[sel].tolist()}
    return out


# --------------------------------------------------------------------------- identification
def identification(
    features: FeatureSet, *, ranks: Sequence[int] = (1, 5), gallery_per_id: int = 1, seed: int = 0,
    distractors: bool = True,
) -> dict[str, Any]:
    """Closed-set identification rank-k with a seeded gallery/probe split per identity."""
    ids = _label_ids(features)
    if gallery_per_id < 1:
        raise ValueError("gallery_per_id must be >= 1")
    rng = np.random.default_rng(seed)
    emb = features.embeddings
    gallery_ids, templates, probes, probe_ids = [], [], [], []
    for c in range(ids.max() + 1):
        members = np.flatnonzero(ids == c)
        if len(members) > gallery_per_id:
            members = rng.permutation(members)
            gal, prb = members[:gallery_per_id], members[gallery_per_id:]
            probes.append(prb)
            probe_ids.append(np.full(len(prb), c))
        elif distractors:
            gal = members
        else:
            continue
        t = emb[gal].mean(0)
        templates.append(t / max(np.linalg.norm(t), 1e-12))
        gallery_ids.append(c)
    if not probes:
        raise ValueError(f"identification needs identities with more than {gallery_per_id} faces")
    probe_idx, probe_lab = np.concatenate(probes), np.concatenate(probe_ids)
    gal = np.stack(templates).astype(np.float32)
    gallery_ids_arr = np.asarray(gallery_ids)
    sims = emb[probe_idx] @ gal.T
    true_col = np.searchsorted(gallery_ids_arr, probe_lab)
    true_sim = sims[np.arange(len(probe_idx)), true_col]
    rank_of_true = (sims > true_sim[:, None]).sum(1) + 1  # 1 = best
    out: dict[str, Any] = {"num_probes": int(len(probe_idx)), "num_gallery": int(len(gal)),
                           "num_identities": int(len(probes)), "gallery_per_id": gallery_per_id, "seed": seed}
    for r in ranks:
        out[f"rank{int(r)}"] = float((rank_of_true <= r).mean())
    return out


# --------------------------------------------------------------------------- reports
def evaluate_features(
    features: FeatureSet,
    *,
    pairs_path: str | Path | None = None,
    pairs_features: FeatureSet | None = None,
    fars: Sequence[float] = DEFAULT_FARS,
    ranks: Sequence[int] = (1, 5),
    gallery_per_id: int = 1,
    seed: int = 0,
    name: str = "model",
    allow_missing: bool = False,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A report dict: TAR@FAR and identification on ``features`` (when labeled), LFW pairs on
    ``pairs_features`` (default: ``features``) when ``pairs_path`` is given."""
    report: dict[str, Any] = {"format": REPORT_FORMAT, "name": name, "num_faces": len(features),
                              "dim": features.dim, "meta": dict(meta or {})}
    if features.labels is not None:
        report["num_identities"] = int(len(np.unique(features.labels)))
        report["verification"] = tar_at_far(features, fars)
        report["identification"] = identification(features, ranks=ranks, gallery_per_id=gallery_per_id, seed=seed)
    if pairs_path is not None:
        report["lfw"] = lfw_verification(pairs_features or features, pairs_path, allow_missing=allow_missing)
    if "verification" not in report and "lfw" not in report:
        raise ValueError("nothing to evaluate: the features have no labels and no pairs file was given")
    return report


def summary(report: dict[str, Any]) -> dict[str, float | None]:
    """The headline numbers of a report, flat: lfw_mean, lfw_std, tar@far=..., rank1, rank5."""
    out: dict[str, float | None] = {}
    if "lfw" in report:
        out["lfw_mean"] = report["lfw"]["mean"]
        out["lfw_std"] = report["lfw"]["std"]
    if "verification" in report:
        for far, tar in report["verification"]["tar"].items():
            out[f"tar@far={far}"] = tar
    if "identification" in report:
        for k, v in report["identification"].items():
            if k.startswith("rank"):
                out[k] = v
    return out


def compare_reports(old: dict[str, Any] | str | Path, new: dict[str, Any] | str | Path) -> dict[str, Any]:
    """Headline metrics of two reports side by side: {metric: {old, new, delta}} (higher is better)."""
    def load(r: dict[str, Any] | str | Path) -> dict[str, Any]:
        return r if isinstance(r, dict) else json.loads(Path(r).read_text())

    a, b = load(old), load(new)
    sa, sb = summary(a), summary(b)
    out: dict[str, Any] = {"old": a.get("name"), "new": b.get("name"), "metrics": {}}
    for key in sorted(set(sa) | set(sb)):
        va, vb = sa.get(key), sb.get(key)
        delta = None if va is None or vb is None else vb - va
        out["metrics"][key] = {"old": va, "new": vb, "delta": delta}
    return out


def plot_roc(reports: Sequence[dict[str, Any]], png_path: str | Path) -> Path:
    """ROC curves (TAR vs FAR, log FAR) of one or more reports into one PNG: all-pairs and LFW pairs panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("verification", "all genuine / impostor pairs"), ("lfw", "LFW pairs.txt")]
    panels = [p for p in panels if any(p[0] in r for r in reports)]
    if not panels:
        raise ValueError("no ROC data in the reports")
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for r in reports:
            if key not in r:
                continue
            roc = r[key]["roc"]
            far, tar = np.asarray(roc["far"]), np.asarray(roc["tar"])
            keep = far > 0
            label = r.get("name", "model")
            if key == "verification":
                tars = ", ".join(f"{v:.3f}@{k}" for k, v in r[key]["tar"].items() if v is not None)
                label += f" (TAR {tars})"
            else:
                label += f" ({100 * r[key]['mean']:.2f}% +- {100 * r[key]['std']:.2f})"
            ax.plot(far[keep], tar[keep], label=label)
        ax.set_xscale("log")
        ax.set_xlabel("false accept rate")
        ax.set_ylabel("true accept rate")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


def write_report(report: dict[str, Any], out_dir: str | Path, *, stem: str | None = None,
                 compare_with: Sequence[dict[str, Any]] = ()) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>_roc.png`` (with any ``compare_with`` reports' curves too)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or str(report.get("name", "report")).replace("/", "_")
    json_path = out_dir / f"{stem}.json"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    png_path = plot_roc([*compare_with, report], out_dir / f"{stem}_roc.png")
    return json_path, png_path
