"""Command line for the extreme-value stages: ``separate-overlap`` and ``uncertainty``.

    # max_logit / argmax already in the file (python -m pipeline embed ... --checkpoint head.pt writes them)
    python -m pipeline separate-overlap unlabeled.npz --out unlabeled_overlap.npz --report overlap.json --plot overlap.png
    # or compute them: a trained recognizer checkpoint, or a class-mean classifier from a labeled feature file
    python -m pipeline separate-overlap unlabeled.npz --checkpoint head.pt --out out.npz
    python -m pipeline separate-overlap unlabeled.npz --prototypes labeled.npz --out out.npz

    python -m pipeline uncertainty faces.npz --clusters clusters.npz --out pminus.npz --report u.json --plot u.png

``separate-overlap`` writes the input feature file back with ``max_logit``, ``argmax``, ``overlap_state`` (int8:
1 overlap, 0 disjoint, -1 rejected), ``overlap_label`` (int64 arg-max labeled class for overlap faces, -1 otherwise),
``overlap_posterior`` (float32 P(overlap mode | score)) and, when class names are known, ``overlap_identity`` (str,
'' unless overlap). ``uncertainty`` writes an npz aligned with the input rows holding ``p_minus``, ``entropy``,
``max_logit``, ``margin``, ``assigned_margin`` (float32) and ``predicted_cluster`` (int64). Both write the report
JSON (the plot's numbers, for the web UI) and the Fig. 3 / Fig. 4c PNG when asked.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from pipeline.progress import TqdmProgress


def _write_json(path: str | Path, data: dict) -> None:
    from pipeline.features import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _scores_for(args, fs):
    """(max_logit, argmax, class_names | None, source) for the unlabeled feature set."""
    from pipeline.features import l2_normalize, load_features

    if args.checkpoint and args.prototypes:
        raise ValueError("give either --checkpoint or --prototypes, not both")
    if args.checkpoint:
        from pipeline.recognition.models import class_logits, load_recognizer, max_logit_and_argmax

        rec = load_recognizer(args.checkpoint)
        emb = fs.extra.get("base_embeddings", fs.embeddings)
        logits = class_logits(rec, l2_normalize(emb))
        ml, am = max_logit_and_argmax(logits)
        return ml, am, rec.class_names, f"checkpoint {args.checkpoint}"
    if args.prototypes:
        lab = load_features(args.prototypes)
        if lab.labels is None:
            raise ValueError(f"{args.prototypes} has no labels; --prototypes needs a labeled feature file")
        if lab.dim != fs.dim:
            raise ValueError(f"--prototypes features are {lab.dim}-d but the input is {fs.dim}-d")
        ids, names = lab.label_ids()
        means = np.zeros((len(names), lab.dim), dtype=np.float64)
        np.add.at(means, ids, lab.embeddings)
        logits = fs.embeddings @ l2_normalize(means).T
        am = logits.argmax(1).astype(np.int64)
        return logits[np.arange(len(fs)), am].astype(np.float32), am, names, f"class means of {args.prototypes}"
    if "max_logit" not in fs.extra or "argmax" not in fs.extra:
        raise ValueError(
            f"{args.features} has no 'max_logit' and 'argmax' arrays; run `python -m pipeline embed ... --checkpoint` "
            "first, or pass --checkpoint head.pt or --prototypes labeled.npz"
        )
    names = fs.extra.get("class_names")
    am = np.asarray(fs.extra["argmax"])
    argmax_name = fs.extra.get("argmax_name")
    return np.asarray(fs.extra["max_logit"]), am, names, "max_logit/argmax arrays in the input", argmax_name


def cmd_separate_overlap(args) -> int:
    from pipeline.overlap.plots import plot_report
    from pipeline.features import load_features, save_features
    from pipeline.overlap.separation import OverlapConfig, separate_overlap

    fs = load_features(args.features)
    got = _scores_for(args, fs)
    ml, am, names, source = got[:4]
    argmax_name = got[4] if len(got) > 4 else None
    cfg = OverlapConfig(confidence=args.confidence, min_faces=args.min_faces,
                        one_mode_threshold=args.one_mode_threshold,
                        nonfinite="reject" if args.reject_nonfinite else "raise")
    res = separate_overlap(ml, am, cfg)
    extra = dict(fs.extra)
    extra.update(max_logit=np.asarray(ml, dtype=np.float32), argmax=np.asarray(am, dtype=np.int64),
                 overlap_state=res.state, overlap_label=res.label, overlap_posterior=res.posterior)
    identity = None
    if names is not None and len(names):
        names = np.asarray(names).astype(str)
        identity = np.where(res.state == 1, names[np.clip(res.label, 0, len(names) - 1)], "")
    elif argmax_name is not None:
        identity = np.where(res.state == 1, np.asarray(argmax_name).astype(str), "")
    if identity is not None:
        extra["overlap_identity"] = identity.astype(str)
    fs.extra = extra
    out = args.out or args.features
    save_features(out, fs)
    report = {**res.report, "input": str(args.features), "output": str(out), "score_source": source}
    report_path = args.report or str(Path(out).with_suffix("")) + "_overlap.json"
    _write_json(report_path, report)
    if args.plot:
        plot_report(report, args.plot)
    c = res.counts
    msg = (f"{len(fs)} faces: {c['overlap']} overlap, {c['disjoint']} disjoint, {c['rejected']} rejected"
           + (f" -- degenerate ({res.degenerate}): {res.report['message']}" if res.degenerate else ""))
    print(msg, file=sys.stderr)
    print(json.dumps({"output": str(out), "report": str(report_path), "counts": c, "degenerate": res.degenerate,
                      "thresholds": res.thresholds}, default=_json_default))
    return 0


def cmd_uncertainty(args) -> int:
    from pipeline.overlap.plots import plot_report
    from pipeline.features import atomic_save_npz, load_features, load_labels
    from pipeline.uncertainty import PMinusConfig, SoftmaxConfig, clustering_uncertainty

    fs = load_features(args.features)
    labels = load_labels(args.clusters)
    if labels.shape != (len(fs),):
        raise ValueError(f"{args.clusters} has {labels.shape[0]} labels but {args.features} has {len(fs)} faces")
    scfg = SoftmaxConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
                         cross_fit=args.cross_fit, seed=args.seed, num_threads=args.threads)
    pcfg = PMinusConfig(margin_kind=args.margin, method=args.method, calibration=args.calibration)
    bar = TqdmProgress("softmax epochs", stage_key="", show=("loss", "train_accuracy"))
    res = clustering_uncertainty(fs.embeddings, labels, scfg, pcfg, progress=bar)
    bar.close()
    out = args.out
    atomic_save_npz(out, **res.arrays())
    report = {**res.report, "input": str(args.features), "clusters_file": str(args.clusters), "output": str(out)}
    report_path = args.report or str(Path(out).with_suffix("")) + "_uncertainty.json"
    _write_json(report_path, report)
    if args.plot:
        plot_report(report, args.plot)
    if res.degenerate:
        print(f"degenerate ({res.degenerate}): {res.report['message']}; p_minus is NaN", file=sys.stderr)
    print(json.dumps({"output": str(out), "report": str(report_path), "degenerate": res.degenerate,
                      "thresholds": res.report.get("thresholds"), "weibull": res.report.get("weibull"),
                      "p_minus_method": res.report.get("p_minus_method"),
                      "mean_p_minus": res.report.get("mean_p_minus")},
                     default=_json_default))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "separate-overlap",
        help="split unlabeled faces into overlap / disjoint / rejected (Otsu + Weibull mixture, paper Sec. 3.1)",
        description="Reads a feature file; writes it back with overlap_state, overlap_label, overlap_posterior, "
        "max_logit, argmax (and overlap_identity), plus a report JSON and optional PNG (Fig. 3).",
    )
    p.add_argument("features", help="unlabeled feature file (.npz)")
    p.add_argument("--checkpoint", help="recognizer checkpoint: compute max-logits with pipeline.recognition.models")
    p.add_argument("--prototypes", help="labeled feature file: a cosine classifier over its class means")
    p.add_argument("--out", help="output feature file (default: overwrite the input)")
    p.add_argument("--report", help="report JSON (default: <out>_overlap.json)")
    p.add_argument("--plot", help="write the Fig. 3 PNG here")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--min-faces", type=int, default=50)
    p.add_argument("--one-mode-threshold", type=float, default=None,
                   help="if the scores have one mode only, call it overlap when its median is at or above this")
    p.add_argument("--reject-nonfinite", action="store_true", help="reject NaN/inf scores instead of failing")
    p.set_defaults(func=cmd_separate_overlap)

    q = subparsers.add_parser(
        "uncertainty",
        help="clustering uncertainty p- per face (softmax regression + Otsu + Weibull, paper Sec. 3.3)",
        description="Reads a feature file and cluster labels (.npz with int64 'labels'); writes p_minus, entropy, "
        "max_logit, margin, assigned_margin, predicted_cluster aligned with the input rows, a report JSON and "
        "optional PNG (Fig. 4c).",
    )
    q.add_argument("features", help="feature file (.npz)")
    q.add_argument("--clusters", required=True, help=".npz with int64 'labels' (negative = unclustered)")
    q.add_argument("--out", required=True, help="output .npz")
    q.add_argument("--report", help="report JSON (default: <out>_uncertainty.json)")
    q.add_argument("--plot", help="write the Fig. 4c PNG here")
    q.add_argument("--epochs", type=int, default=2)
    q.add_argument("--batch-size", type=int, default=1024)
    q.add_argument("--lr", type=float, default=1e-3)
    q.add_argument("--cross-fit", type=int, default=5, help="folds for out-of-fold scoring (0: in-sample)")
    q.add_argument("--margin", choices=("assigned", "top2"), default="assigned",
                   help="margin p- is computed from (top2: the paper's top-1 minus top-2)")
    q.add_argument("--method", choices=("calibrated", "mixture", "paper"), default="calibrated",
                   help="p-: calibrated logistic model (default), Weibull-mixture posterior, or the paper's literal one")
    q.add_argument("--calibration", default=None, help="calibrator JSON (default: pipeline/uncertainty/calibration.json)")
    q.add_argument("--device", default="auto")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    q.set_defaults(func=cmd_uncertainty)
