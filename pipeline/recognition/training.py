"""CosFace training: one loop for both backbones, with checkpoints, resume, seeds, AMP and DDP.

    config = TrainConfig(backbone="mlp", epochs=30)
    ckpt = train(config, labeled_features, out_path="head.pt", progress=print_progress)

- ``backbone="mlp"``: ``train_set`` is a labeled FeatureSet; the head trains on its embeddings.
- ``backbone="mobilefacenet"`` or ``"sface"``: ``train_set`` is a labeled FeatureSet whose ``paths`` point to
  images (its embeddings are ignored). ``config.aligned=True`` takes them as ready 112x112
  crops, otherwise each image is detected and aligned with ``pipeline.recognition.faces`` first (images
  with no face are dropped and counted in the checkpoint's metrics). ``train_on_crops`` takes
  crops already in memory. Training crops are flipped left-right at random.
- ``backbone="sface"`` fine-tunes the pretrained SFace network (``pipeline.recognition.sface_torch``): all of it,
  or only its last ``trainable_blocks`` stages. With a frozen trunk (by default on the CPU,
  ``cache_trunk``) the trunk runs once per crop and its flipped twin before training, and every
  epoch runs only the trainable stages on those cached activations (float16, in memory or in
  ``cache_dir``): the same result as running the whole network, many times faster.

``weights`` (N,) are per-sample loss weights, e.g. ``(1 - p_minus) ** gamma`` for pseudo-labeled
faces and 1 for labeled ones.

The checkpoint (``torch.save`` dict, written atomically at the end of every epoch) holds the
model weights, the config, the class names, the input feature size, the metrics history and
the optimiser/scheduler/scaler state, so ``resume_from=`` continues a run exactly where it
stopped: shuffling and flips are seeded by (seed, epoch), so 2 epochs equal 1 + 1 resumed.

Distributed: run under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK in the environment); each
rank takes its DistributedSampler share, rank 0 reports progress and writes the checkpoint.
Mixed precision when ``config.amp``: float16 autocast + GradScaler on CUDA; bfloat16 autocast (no scaler) for
image backbones on a CPU that runs bfloat16 natively (``loop.cpu_has_bf16``), about 1.6x faster there.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.features import FeatureSet
from pipeline.progress import Progress
from pipeline.recognition.config import TrainConfig
from pipeline.recognition.loop import run_training
from pipeline.recognition.models import FEATURE_BACKBONES, IMAGE_BACKBONES

log = logging.getLogger(__name__)



# --------------------------------------------------------------------------- data
def load_crops(
    paths: Sequence[str | Path], *, aligned: bool, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read images as aligned 112x112 BGR crops: (crops (K, 112, 112, 3) uint8, kept index (K,) int64)."""
    from pipeline.recognition.extraction import iter_crops

    crops, kept = [], []
    for i, crop, error in iter_crops(paths, aligned=aligned):
        if crop is None:
            log.warning("skipping %s: %s", paths[i], error)
        else:
            crops.append(crop)
            kept.append(i)
        if progress is not None:
            progress(i + 1, len(paths), phase="crops")
    if not crops:
        raise ValueError("no usable face crops in the training set")
    return np.stack(crops), np.asarray(kept, dtype=np.int64)


def _check_weights(weights: np.ndarray | None, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float32)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    return w


# --------------------------------------------------------------------------- public entry points
def train(
    config: TrainConfig,
    train_set: FeatureSet,
    *,
    weights: np.ndarray | None = None,
    out_path: str | Path,
    progress: Progress | None = None,
    resume_from: str | Path | None = None,
) -> Path:
    """Train a CosFace recognizer on a labeled FeatureSet; return the checkpoint path."""
    if not isinstance(train_set, FeatureSet):
        raise ValueError(f"train_set must be a FeatureSet, got {type(train_set).__name__}")
    label_ids, class_names = train_set.label_ids()
    weights = _check_weights(weights, len(train_set))
    if config.backbone in FEATURE_BACKBONES:
        return run_training(config, train_set.embeddings, label_ids, class_names, weights=weights, out_path=out_path,
                      progress=progress, resume_from=resume_from, extra_metrics={})
    crops, kept = load_crops(train_set.paths, aligned=config.aligned, progress=progress)
    skipped = len(train_set) - len(kept)
    if skipped:
        log.warning("%d of %d training images had no usable face and were dropped", skipped, len(train_set))
    return train_on_crops(config, crops, train_set.labels[kept],
                          weights=None if weights is None else weights[kept], out_path=out_path,
                          progress=progress, resume_from=resume_from, extra_metrics={"skipped_images": skipped})


def train_on_crops(
    config: TrainConfig,
    crops: np.ndarray,
    labels: Sequence[str],
    *,
    weights: np.ndarray | None = None,
    out_path: str | Path,
    progress: Progress | None = None,
    resume_from: str | Path | None = None,
    extra_metrics: dict[str, Any] | None = None,
    trunk_cache: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> Path:
    """Train an image backbone on aligned crops (N, 112, 112, 3) uint8 BGR with string labels (N,).

    ``trunk_cache``: the frozen SFace trunk's activations of these crops (and of their mirror images),
    when the caller already has them (``pipeline.recognition.sface_torch.cache_trunk_activations``)."""
    from pipeline.recognition.embedders import check_crops

    if config.backbone not in IMAGE_BACKBONES:
        raise ValueError(f"train_on_crops needs an image backbone, got {config.backbone!r}")
    crops = check_crops(crops)
    labels = np.asarray(labels).astype(str)
    if labels.shape != (len(crops),):
        raise ValueError(f"labels must have shape ({len(crops)},), got {labels.shape}")
    class_names, ids = np.unique(labels, return_inverse=True)
    return run_training(config, crops, ids.astype(np.int64), class_names, weights=_check_weights(weights, len(crops)),
                  out_path=out_path, progress=progress, resume_from=resume_from, extra_metrics=extra_metrics or {},
                  trunk_cache=trunk_cache)
