"""Command line for the recognizer: ``embed``, ``train``, ``evaluate``.

    python -m pipeline embed IMAGES_DIR --out feats.npz                     # SFace (or --model any.onnx)
    python -m pipeline embed IMAGES_DIR --checkpoint head.pt --out out.npz  # + logits, max_logit, argmax
    python -m pipeline embed --features sface.npz --checkpoint head.pt --out out.npz  # MLP head, no images
    python -m pipeline train feats.npz --out head.pt --epochs 30            # MLP head over features
    python -m pipeline train IMAGES_DIR --backbone mobilefacenet --out net.pt
    python -m pipeline evaluate feats.npz --pairs lfw --out-dir report/ [--checkpoint head.pt] [--compare old.json]

Settings (environment): FACECURATE_EMBEDDER_ONNX, an ONNX face model of SFace's input form used
instead of SFace; FACECURATE_SHARED_DATA, where ``--pairs lfw`` finds ``lfw/pairs.txt``.

With ``--checkpoint``, ``embed`` writes the recognizer's embeddings as ``embeddings`` plus
``logits`` (N, C) cosine logits over the checkpoint's labeled classes (no scale, no margin),
``max_logit`` (N,), ``argmax`` (N,) int64 (index into the checkpoint's class names) and
``argmax_name`` (N,) str; for an MLP head also ``base_embeddings``, the frozen embedder's features.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from pipeline.progress import TqdmProgress

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("FACECURATE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _epoch_line(bar, info: dict) -> None:
    if info.get("phase") == "epoch":
        bar.write(f"epoch {info['epoch']}/{info['epochs']}: loss {info['loss']:.4f} "
                  f"train acc {info.get('accuracy', float('nan')):.4f} ({info['rate']:.0f} samples/s)")


def _bar(desc: str) -> TqdmProgress:
    return TqdmProgress(
        desc, stage_key="phase", rename={"epoch": "train"}, show=("epoch", "loss", "accuracy", "rate"),
        unit=lambda stage: "step" if stage == "train" else "img", on_update=_epoch_line,
    )


def _base_embedder(args):
    from pipeline.recognition.embedders import OnnxEmbedder

    model = args.model or os.environ.get("FACECURATE_EMBEDDER_ONNX") or None
    return OnnxEmbedder(model, swap_rb=not args.bgr, scale=args.input_scale, mean=args.input_mean)


def _image_list(source: str, labeled: bool | None) -> tuple[list[Path], list[str] | None]:
    from pipeline.recognition.extraction import list_images

    p = Path(source)
    if p.is_file() and p.suffix == ".txt":
        rows = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
        paths = [Path(r.split("\t")[0]) for r in rows]
        labels = [r.split("\t")[1] for r in rows] if rows and all("\t" in r for r in rows) else None
        return paths, labels
    return list_images(p, labeled=labeled)


# --------------------------------------------------------------------------- embed
def cmd_embed(args) -> int:
    from pipeline.recognition.extraction import extract_features
    from pipeline.features import FeatureSet, load_features, save_features
    from pipeline.recognition.models import FEATURE_BACKBONES, TorchEmbedder, load_recognizer, max_logit_and_argmax

    rec = load_recognizer(args.checkpoint) if args.checkpoint else None
    if args.features:
        if rec is None or rec.backbone not in FEATURE_BACKBONES:
            raise ValueError("--features needs --checkpoint of an MLP head (it re-embeds features, not images)")
        base = load_features(args.features)
        feats = FeatureSet(base.embeddings, base.paths, base.labels, dict(base.extra))
        failed: list = []
    else:
        if not args.input:
            raise ValueError("give an image folder (or a .txt list of paths), or --features with an MLP checkpoint")
        labeled = True if args.labeled else (False if args.unlabeled else None)
        paths, labels = _image_list(args.input, labeled)
        if not paths:
            raise ValueError(f"no images found in {args.input}")
        if rec is None or rec.backbone in FEATURE_BACKBONES:
            embedder = _base_embedder(args)
        else:
            embedder = TorchEmbedder(rec)
        bar = _bar("embed")
        res = extract_features(paths, embedder, labels=labels, aligned=args.aligned, batch_size=args.batch_size,
                               progress=bar)
        bar.close()
        failed = res.failed
        if res.features is None:
            raise ValueError(f"no face found in any of the {len(paths)} images")
        feats = res.features
    if rec is not None:
        if rec.backbone in FEATURE_BACKBONES:
            emb, logits = rec.features_and_logits(feats.embeddings)
            feats.extra["base_embeddings"] = feats.embeddings
            feats = FeatureSet(emb, feats.paths, feats.labels, feats.extra)
        else:
            logits = rec.logits_from_embeddings(feats.embeddings)
        mx, arg = max_logit_and_argmax(logits)
        feats.extra.update(logits=logits, max_logit=mx, argmax=arg, argmax_name=rec.class_names[arg])
    out = save_features(args.out, feats)
    print(f"wrote {len(feats)} x {feats.dim} embeddings to {out}"
          + (f" with logits over {rec.num_classes} classes" if rec is not None else ""))
    if failed:
        print(f"{len(failed)} images had no usable face:", file=sys.stderr)
        for path, reason in failed[:10]:
            print(f"  {path}: {reason}", file=sys.stderr)
        if args.failed_list:
            Path(args.failed_list).write_text("".join(f"{p}\t{r}\n" for p, r in failed))
    return 0


# --------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    from pipeline.features import FeatureSet, load_features
    from pipeline.recognition.training import TrainConfig, train

    config = TrainConfig(
        backbone=args.backbone, embedding_dim=args.embedding_dim, hidden_dim=args.hidden_dim,
        mlp_layers=args.layers, dropout=args.dropout, width=args.width, scale=args.scale, margin=args.margin,
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, seed=args.seed, device=args.device,
        amp=not args.no_amp, flip=not args.no_flip, aligned=args.aligned, num_threads=args.threads,
        trainable_blocks=args.trainable_blocks, cache_dir=args.cache_dir,
    )
    src = Path(args.input)
    if src.is_dir():
        if config.backbone == "mlp":
            raise ValueError("the 'mlp' backbone trains on a feature file; run `embed` on the folder first")
        paths, labels = _image_list(str(src), True)
        if not paths:
            raise ValueError(f"no images in {src}")
        data = FeatureSet(np.tile(np.eye(1, 1, dtype=np.float32), (len(paths), 1)), np.asarray(paths, str), labels)
    else:
        data = load_features(src)
    if data.labels is None:
        raise ValueError(f"{src} has no labels; training needs labeled faces")
    weights = None
    if args.weights:
        with np.load(args.weights, allow_pickle=False) as z:
            if "weights" not in z.files:
                raise ValueError(f"{args.weights} has no 'weights' array")
            weights = z["weights"]
    elif args.weights_column:
        if args.weights_column not in data.extra:
            raise ValueError(f"{src} has no array {args.weights_column!r} (has {sorted(data.extra)})")
        weights = data.extra[args.weights_column]
    bar = None if int(os.environ.get("RANK", 0)) else _bar("train")
    ckpt = train(config, data, weights=weights, out_path=args.out, progress=bar, resume_from=args.resume)
    if bar is not None:
        bar.close()
    if int(os.environ.get("RANK", 0)) == 0:
        from pipeline.recognition.checkpoint import load_checkpoint

        m = load_checkpoint(ckpt)["metrics"]
        print(f"wrote {ckpt}: {m['num_classes']} classes, {m['num_samples']} samples, final loss "
              f"{m['final_loss']:.4f}, train accuracy {m['final_accuracy']:.4f}, {m['train_seconds']:.1f} s")
    return 0


# --------------------------------------------------------------------------- evaluate
def _pairs_path(value: str | None) -> Path | None:
    if value is None:
        return None
    p = shared_data_dir() / "lfw" / "pairs.txt" if value == "lfw" else Path(value)
    if not p.is_file():
        raise FileNotFoundError(f"no pairs file at {p}")
    return p


def _num(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def cmd_evaluate(args) -> int:
    from pipeline.evaluation.verification import compare_reports, evaluate_features, summary, write_report
    from pipeline.features import FeatureSet, load_features

    feats = load_features(args.features)
    pairs_feats = load_features(args.pairs_features) if args.pairs_features else None
    meta = {"features": str(args.features)}
    if args.checkpoint:
        from pipeline.recognition.models import load_recognizer

        rec = load_recognizer(args.checkpoint)
        feats = FeatureSet(rec.embed_features(feats.embeddings), feats.paths, feats.labels)
        if pairs_feats is not None:
            pairs_feats = FeatureSet(rec.embed_features(pairs_feats.embeddings), pairs_feats.paths)
        meta["checkpoint"] = str(args.checkpoint)
    name = args.name or Path(args.checkpoint or args.features).stem
    report = evaluate_features(feats, pairs_path=_pairs_path(args.pairs), pairs_features=pairs_feats,
                               fars=args.far, gallery_per_id=args.gallery_per_id, seed=args.seed, name=name,
                               allow_missing=args.allow_missing, meta=meta)
    old = json.loads(Path(args.compare).read_text()) if args.compare else None
    json_path, png_path = write_report(report, args.out_dir, compare_with=[old] if old else [])
    for key, value in summary(report).items():
        print(f"{key:>16}: {_num(value)}")
    if old is not None:
        cmp = compare_reports(old, report)
        print(f"compared with {cmp['old']}:")
        for key, row in cmp["metrics"].items():
            print(f"{key:>16}: {_num(row['old'])} -> {_num(row['new'])} ({_num(row['delta'], '+.4f')})")
    print(f"wrote {json_path} and {png_path}")
    return 0


# --------------------------------------------------------------------------- registration
def register(subparsers) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = subparsers.add_parser(
        "embed", formatter_class=fmt, help="images -> feature file (detect, align, embed; optional class logits)",
        description="Detect, align and embed every image's primary face into a feature file (.npz with "
        "embeddings, paths, labels). Default embedder: the pretrained SFace ONNX model (frozen). With "
        "--checkpoint, embed with a trained CosFace recognizer and also write logits (N, C cosine logits "
        "over its labeled classes), max_logit, argmax and argmax_name.")
    p.add_argument("input", nargs="?", help="a folder of images (identity sub-folders give labels) or a .txt "
                   "list of paths (optionally '<path>\\t<label>' lines)")
    p.add_argument("--out", required=True, help="output feature file (.npz)")
    p.add_argument("--aligned", action="store_true", help="images are ready 112x112 aligned crops: no detection")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--labeled", action="store_true", help="force labels from sub-folder names")
    g.add_argument("--unlabeled", action="store_true", help="write no labels")
    p.add_argument("--model", help="ONNX face model of SFace's input form (default: $FACECURATE_EMBEDDER_ONNX or SFace)")
    p.add_argument("--bgr", action="store_true", help="the ONNX model takes BGR input (default RGB)")
    p.add_argument("--input-scale", type=float, default=1.0, help="ONNX input pixel scale")
    p.add_argument("--input-mean", type=float, default=0.0, help="ONNX input pixel mean")
    p.add_argument("--checkpoint", help="a trained recognizer checkpoint (from `train`)")
    p.add_argument("--features", help="with an MLP-head --checkpoint: re-embed this feature file instead of images")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--failed-list", help="write the images with no usable face here (path<TAB>reason)")
    p.set_defaults(func=cmd_embed)

    p = subparsers.add_parser(
        "train", formatter_class=fmt, help="train a CosFace recognizer (MLP head or MobileFaceNet)",
        description="Train a CosFace recognizer: backbone + cosine classifier, loss s*(cos - m*onehot) with "
        "per-sample weights. 'mlp' trains a head over a labeled feature file (minutes on a CPU); "
        "'mobilefacenet' trains on images (a labeled folder, or a feature file whose paths are images). "
        "Writes a checkpoint after every epoch; --resume continues one. Under torchrun it trains with "
        "DistributedDataParallel; on CUDA with AMP.")
    p.add_argument("input", help="labeled feature file (.npz), or an image folder for an image backbone")
    p.add_argument("--out", required=True, help="checkpoint path (.pt)")
    p.add_argument("--backbone", default="mlp", choices=["mlp", "mobilefacenet", "sface"],
                   help="mlp: head over features; mobilefacenet: from scratch; sface: fine-tune pretrained SFace")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-4 for mlp and sface, 1e-3 for mobilefacenet)")
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--scale", type=float, default=64.0, help="CosFace scale s")
    p.add_argument("--margin", type=float, default=0.35, help="CosFace margin m")
    p.add_argument("--embedding-dim", type=int, default=None, help="output size (default: input size / 128)")
    p.add_argument("--hidden-dim", type=int, default=512, help="MLP hidden size")
    p.add_argument("--layers", type=int, default=2, help="MLP linear layers")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--width", type=float, default=1.0, help="MobileFaceNet width multiplier")
    p.add_argument("--trainable-blocks", type=int, default=None,
                   help="sface: fine-tune only its last N of 15 stages (default: all)")
    p.add_argument("--cache-dir", help="sface: keep the frozen trunk's cached activations in .npy files here")
    p.add_argument("--aligned", action="store_true", help="image paths are ready 112x112 crops")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", help=".npz with a (N,) 'weights' array of per-sample loss weights")
    p.add_argument("--weights-column", help="use this (N,) array of the input feature file as loss weights")
    p.add_argument("--resume", help="checkpoint to resume from (same data and model config)")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "evaluate", formatter_class=fmt, help="LFW pairs, TAR@FAR, identification -> JSON report + ROC PNG",
        description="Evaluate a feature file: TAR at FAR over all genuine/impostor pairs and closed-set "
        "identification rank-1/rank-5 (labeled features), and LFW verification with the official "
        "10-fold protocol (--pairs). Writes <name>.json and <name>_roc.png; --compare puts an earlier "
        "report beside it.")
    p.add_argument("features", help="feature file (.npz)")
    p.add_argument("--checkpoint", help="MLP-head checkpoint to apply to the features first")
    p.add_argument("--pairs", help="LFW pairs.txt, or 'lfw' for $FACECURATE_SHARED_DATA/lfw/pairs.txt")
    p.add_argument("--pairs-features", help="feature file to score the pairs on (default: FEATURES)")
    p.add_argument("--allow-missing", action="store_true", help="score the pairs found; skip the rest")
    p.add_argument("--far", type=float, nargs="+", default=[1e-3, 1e-4], help="FAR targets")
    p.add_argument("--gallery-per-id", type=int, default=1, help="gallery faces per identity")
    p.add_argument("--seed", type=int, default=0, help="gallery/probe split seed")
    p.add_argument("--name", help="report name (default: the checkpoint's or feature file's stem)")
    p.add_argument("--out-dir", default="reports", help="where the JSON and PNG go")
    p.add_argument("--compare", help="an earlier report JSON to compare with")
    p.set_defaults(func=cmd_evaluate)
