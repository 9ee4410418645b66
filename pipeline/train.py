"""CosFace training: one loop for both backbones, with checkpoints, resume, seeds, AMP and DDP.

    config = TrainConfig(backbone="mlp", epochs=30)
    ckpt = train(config, labeled_features, out_path="head.pt", progress=print_progress)

- ``backbone="mlp"``: ``train_set`` is a labeled FeatureSet; the head trains on its embeddings.
- ``backbone="mobilefacenet"`` or ``"sface"``: ``train_set`` is a labeled FeatureSet whose ``paths`` point to
  images (its embeddings are ignored). ``config.aligned=True`` takes them as ready 112x112
  crops, otherwise each image is detected and aligned with ``pipeline.faces`` first (images
  with no face are dropped and counted in the checkpoint's metrics). ``train_on_crops`` takes
  crops already in memory. Training crops are flipped left-right at random.
- ``backbone="sface"`` fine-tunes the pretrained SFace network (``pipeline.sface_torch``): all of it,
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
AMP (float16 autocast + GradScaler) is used only on CUDA and only when ``config.amp``.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

from .progress import Progress
from .features import FeatureSet, atomic_path
from .losses import DEFAULT_MARGIN, DEFAULT_SCALE, CosFaceLoss
from .recognizer import (BACKBONES, FEATURE_BACKBONES, IMAGE_BACKBONES, PRETRAINED_BACKBONES, RecognizerModel,
                         build_model)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


@dataclass
class TrainConfig:
    backbone: str = "mlp"  # 'mlp' (over features) | 'mobilefacenet' | 'sface' (over 112x112 crops)
    embedding_dim: int | None = None  # None: the input size for 'mlp', 128 for image backbones
    hidden_dim: int = 512  # mlp
    mlp_layers: int = 2  # mlp: number of Linear layers
    dropout: float = 0.0  # mlp; sface: before its FC layer (SFace was trained with 0.4)
    residual: bool | None = None  # mlp: None = residual when in and out sizes match
    width: float = 1.0  # image backbone width multiplier
    trainable_blocks: int | None = None  # sface: fine-tune only its last N of 15 stages (None: all)
    freeze_bn: bool = True  # sface: BatchNorm keeps SFace's running statistics (small batches are noisy)
    cache_trunk: bool | None = None  # sface: cache the frozen trunk's activations (None: on CPU when N < 15)
    cache_dir: str | None = None  # sface: keep those activations in .npy files here instead of memory
    classifier_init: str = "auto"  # 'class_means' | 'random' | 'auto' (class_means for 'mlp' and 'sface', random otherwise)
    scale: float = DEFAULT_SCALE
    margin: float = DEFAULT_MARGIN
    epochs: int = 20
    batch_size: int = 256
    optimizer: str = "adamw"  # 'adamw' | 'sgd' (momentum 0.9)
    lr: float | None = None  # None: 1e-4 for 'mlp' (chosen on held-out LFW identities, bench/recognizer.py) and 'sface', 1e-3 otherwise
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to 0
    seed: int = 0
    device: str = "auto"  # 'auto' (cuda if available) | 'cpu' | 'cuda' | 'cuda:1' ...
    amp: bool = True  # float16 autocast, CUDA only
    flip: bool = True  # image backbones: random horizontal flip
    aligned: bool = False  # image backbones: paths are ready 112x112 crops
    distributed: bool | None = None  # None: DDP when WORLD_SIZE > 1
    num_threads: int = 0  # CPU threads for torch (0: leave as is)
    log_every: int = 10  # progress callback every this many steps
    init_checkpoint: str | None = None  # start the backbone from this checkpoint's weights (same backbone)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.lr is None:
            self.lr = 1e-4 if self.backbone in FEATURE_BACKBONES + PRETRAINED_BACKBONES else 1e-3
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        for name in ("epochs", "batch_size", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.classifier_init not in ("auto", "class_means", "random"):
            raise ValueError(f"classifier_init must be 'auto', 'class_means' or 'random', got {self.classifier_init!r}")
        if self.lr <= 0 or self.scale <= 0 or not 0 <= self.margin < 1:
            raise ValueError("lr and scale must be positive and margin in [0, 1)")
        if self.trainable_blocks is not None:
            from .sface_torch import NUM_STAGES

            if self.backbone != "sface":
                raise ValueError("trainable_blocks applies to the 'sface' backbone only")
            if not 1 <= int(self.trainable_blocks) <= NUM_STAGES:
                raise ValueError(f"trainable_blocks must be in [1, {NUM_STAGES}] or None, got {self.trainable_blocks}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not our checkpoint"
        raise ValueError(f"{path} is not a readable recognizer checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a facecurate recognizer checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


# --------------------------------------------------------------------------- data
def load_crops(
    paths: Sequence[str | Path], *, aligned: bool, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read images as aligned 112x112 BGR crops: (crops (K, 112, 112, 3) uint8, kept index (K,) int64)."""
    from .extract import iter_crops

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


def _dist_env() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _pick_device(config: TrainConfig, local_rank: int, distributed: bool) -> torch.device:
    if config.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank if distributed else torch.cuda.current_device())
        return torch.device("cpu")
    dev = torch.device(config.device)
    if dev.type == "cuda" and distributed and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


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
        return _train(config, train_set.embeddings, label_ids, class_names, weights=weights, out_path=out_path,
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
) -> Path:
    """Train an image backbone on aligned crops (N, 112, 112, 3) uint8 BGR with string labels (N,)."""
    from .embedders import check_crops

    if config.backbone not in IMAGE_BACKBONES:
        raise ValueError(f"train_on_crops needs an image backbone, got {config.backbone!r}")
    crops = check_crops(crops)
    labels = np.asarray(labels).astype(str)
    if labels.shape != (len(crops),):
        raise ValueError(f"labels must have shape ({len(crops)},), got {labels.shape}")
    class_names, ids = np.unique(labels, return_inverse=True)
    return _train(config, crops, ids.astype(np.int64), class_names, weights=_check_weights(weights, len(crops)),
                  out_path=out_path, progress=progress, resume_from=resume_from, extra_metrics=extra_metrics or {})


# --------------------------------------------------------------------------- the loop
def _batch_input(data: np.ndarray, idx: np.ndarray, image: bool, flip: torch.Tensor | None,
                 flipped: np.ndarray | None = None) -> torch.Tensor:
    """Model input for rows ``idx``: features as they are; crops (N, 112, 112, 3) uint8 BGR as RGB
    ``(x - 127.5) / 128``, mirrored where ``flip``; cached trunk activations (``data.ndim == 4`` and not
    uint8) as float32, taken from ``flipped`` (the mirrored crops' activations) where ``flip``."""
    if not image:
        return torch.from_numpy(data[idx])
    if data.dtype != np.uint8:  # cached activations
        rows = data[idx]
        if flip is not None and flipped is not None and bool(flip.any()):
            rows = np.where(flip.numpy()[:, None, None, None], flipped[idx], rows)
        return torch.from_numpy(np.asarray(rows, dtype=np.float32))
    x = torch.from_numpy(np.ascontiguousarray(data[idx][..., ::-1])).permute(0, 3, 1, 2).float()
    x = (x - 127.5) / 128.0
    if flip is not None and bool(flip.any()):
        x[flip] = x[flip].flip(-1)
    return x


class _CachedHead(torch.nn.Module):
    """Cached trunk activations -> (embeddings, cosine logits) through an SFace model's trainable stages."""

    def __init__(self, model: RecognizerModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.model.backbone.forward_head(x)
        return emb, self.model.classifier(emb)


def _use_trunk_cache(config: TrainConfig, device: torch.device) -> bool:
    from .sface_torch import NUM_STAGES

    frozen = config.backbone == "sface" and config.trainable_blocks is not None and config.trainable_blocks < NUM_STAGES
    if config.cache_trunk and not frozen:
        raise ValueError("cache_trunk needs the 'sface' backbone with trainable_blocks below its 15 stages")
    return frozen and (device.type == "cpu" if config.cache_trunk is None else bool(config.cache_trunk))


def _trunk_activations(model: RecognizerModel, crops: np.ndarray, config: TrainConfig, device: torch.device,
                       out_path: Path, progress: Progress | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Run the frozen SFace trunk once over the crops (and, with ``flip``, over their mirror images)."""
    from .sface_torch import cache_trunk_activations, split_for_finetune

    trunk, _ = split_for_finetune(model.backbone, config.trainable_blocks)
    out = []
    for flip in (False, True) if config.flip else (False,):
        path = None
        if config.cache_dir:
            path = Path(config.cache_dir) / f"{out_path.stem}.trunk{config.trainable_blocks}{'_flip' if flip else ''}.npy"
        t0 = time.perf_counter()
        out.append(cache_trunk_activations(trunk, crops, 64, flip=flip, out_path=path, device=device))
        log.info("cached trunk activations %s of %d crops in %.1f s", out[-1].shape[1:], len(crops),
                 time.perf_counter() - t0)
        if progress is not None:
            progress(len(out), 1 + int(config.flip), phase="trunk_cache")
    return out[0], (out[1] if len(out) > 1 else None)


def _init_backbone(model: RecognizerModel, config: TrainConfig) -> None:
    """Copy the backbone weights of ``config.init_checkpoint`` (e.g. the parent recognizer version)."""
    parent = load_checkpoint(config.init_checkpoint)
    if parent["config"].get("backbone") != config.backbone:
        raise ValueError(f"init_checkpoint has backbone {parent['config'].get('backbone')!r}, "
                         f"this training {config.backbone!r}")
    state = {k[len("backbone."):]: v for k, v in parent["model"].items() if k.startswith("backbone.")}
    model.backbone.load_state_dict(state)


@torch.no_grad()
def _init_class_means(net: torch.nn.Module, data: np.ndarray, label_ids: np.ndarray, num_classes: int,
                      image: bool, device: torch.device, classifier: torch.nn.Module, batch: int = 256) -> None:
    """Set each class weight to the normalised mean of the untrained backbone's embeddings of that class
    (weight imprinting): training then starts from a classifier that already fits the features.
    ``net`` maps a batch input to (embeddings, logits)."""
    was_training = net.training
    net.eval()
    sums = torch.zeros(num_classes, classifier.weight.shape[1], dtype=torch.float64)
    for i in range(0, len(label_ids), batch):
        idx = np.arange(i, min(i + batch, len(label_ids)))
        emb = torch.nn.functional.normalize(net(_batch_input(data, idx, image, None).to(device))[0].float(), dim=1)
        sums.index_add_(0, torch.from_numpy(label_ids[idx]), emb.cpu().double())
    classifier.weight.copy_(torch.nn.functional.normalize(sums, dim=1).to(classifier.weight))
    net.train(was_training)


def _train(
    config: TrainConfig,
    data: np.ndarray,
    label_ids: np.ndarray,
    class_names: np.ndarray,
    *,
    weights: np.ndarray | None,
    out_path: str | Path,
    progress: Progress | None,
    resume_from: str | Path | None,
    extra_metrics: dict[str, Any],
) -> Path:
    image = config.backbone in IMAGE_BACKBONES
    n = len(label_ids)
    if n < 2:
        raise ValueError(f"need at least 2 training samples, got {n}")
    input_dim = None if image else int(data.shape[1])
    out_path = Path(out_path)

    rank, world, local_rank = _dist_env()
    distributed = config.distributed if config.distributed is not None else world > 1
    created_group = False
    if distributed and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo"
        dist.init_process_group(backend=backend)
        created_group = True
    if distributed:
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = 0, 1
    device = _pick_device(config, local_rank, distributed)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    use_amp = bool(config.amp and device.type == "cuda")

    cfg = asdict(config)
    torch.manual_seed(config.seed)
    model: RecognizerModel = build_model(cfg, len(class_names), input_dim).to(device)
    if config.init_checkpoint and resume_from is None:
        _init_backbone(model, config)
    forward: torch.nn.Module = model
    flipped = None
    if _use_trunk_cache(config, device):
        data, flipped = _trunk_activations(model, data, config, device, out_path, progress if rank == 0 else None)
        forward = _CachedHead(model)
    init = config.classifier_init
    if init == "class_means" or (init == "auto" and (not image or config.backbone in PRETRAINED_BACKBONES)):
        _init_class_means(forward, data, label_ids, len(class_names), image, device, model.classifier)
    criterion = CosFaceLoss(config.scale, config.margin)
    params = [p for p in model.parameters() if p.requires_grad]  # a partly frozen SFace trains only its head
    if config.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=config.lr, momentum=0.9,
                                                     weight_decay=config.weight_decay, nesterov=True)
    else:
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    per_rank = len(sampler)
    batch = max(1, min(config.batch_size, per_rank))
    steps_per_epoch = per_rank // batch + (1 if per_rank % batch >= 2 else 0)
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, global_step = 0, 0
    history: list[dict[str, Any]] = []
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from)
        if list(ckpt["class_names"]) != [str(c) for c in class_names]:
            raise ValueError(f"cannot resume from {resume_from}: its classes differ from this training set's")
        for key in ("backbone", "embedding_dim", "hidden_dim", "mlp_layers", "width", "residual", "trainable_blocks"):
            if ckpt["config"].get(key) != cfg.get(key):
                raise ValueError(f"cannot resume from {resume_from}: config {key!r} was "
                                 f"{ckpt['config'].get(key)!r}, now {cfg.get(key)!r}")
        if ckpt.get("input_dim") != input_dim:
            raise ValueError(f"cannot resume: checkpoint input size {ckpt.get('input_dim')}, data {input_dim}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if use_amp and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
        history = list(ckpt.get("metrics", {}).get("history", []))
        log.info("resuming from %s at epoch %d", resume_from, start_epoch)

    net: torch.nn.Module = forward
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None)

    targets_all = torch.from_numpy(label_ids)
    weights_all = None if weights is None else torch.from_numpy(weights)
    t_train = time.perf_counter()
    prior_seconds = sum(h.get("seconds", 0.0) for h in history)
    for epoch in range(start_epoch, config.epochs):
        net.train()
        sampler.set_epoch(epoch)
        order = np.fromiter(iter(sampler), dtype=np.int64, count=per_rank)
        flip_gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 7919 + rank)
        t_epoch, t_log = time.perf_counter(), time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.float64)
        seen, seen_log = 0, 0
        for step in range(steps_per_epoch):
            idx = order[step * batch : (step + 1) * batch]
            flip = torch.rand(len(idx), generator=flip_gen) < 0.5 if (image and config.flip) else None
            x = _batch_input(data, idx, image, flip, flipped).to(device, non_blocking=True)
            y = targets_all[idx].to(device, non_blocking=True)
            w = None if weights_all is None else weights_all[idx].to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                _, cosine = net(x)
            loss = criterion(cosine.float(), y, w)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            global_step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += float((cosine.detach().argmax(1) == y).sum())
            seen += len(idx)
            seen_log += len(idx)
            if progress is not None and rank == 0 and (step + 1) % config.log_every == 0:
                now = time.perf_counter()
                progress(global_step, total_steps, epoch=epoch + 1, epochs=config.epochs, step=step + 1,
                         loss=float(loss.detach()), rate=seen_log * world / max(now - t_log, 1e-9),
                         lr=opt.param_groups[0]["lr"], phase="train")
                t_log, seen_log = now, 0
        stats = torch.stack([loss_sum, correct, torch.tensor(float(seen), dtype=torch.float64)])
        if distributed:
            stats = stats.to(device)
            dist.all_reduce(stats)
            stats = stats.cpu()
        secs = time.perf_counter() - t_epoch
        record = {"epoch": epoch + 1, "loss": float(stats[0] / stats[2]), "accuracy": float(stats[1] / stats[2]),
                  "seconds": round(secs, 3), "samples_per_s": float(stats[2]) / max(secs, 1e-9),
                  "lr": opt.param_groups[0]["lr"]}
        history.append(record)
        if not math.isfinite(record["loss"]):
            raise ValueError(f"training diverged at epoch {epoch + 1} (loss {record['loss']})")
        if rank == 0:
            metrics = {"history": history, "final_loss": record["loss"], "final_accuracy": record["accuracy"],
                       "train_seconds": prior_seconds + time.perf_counter() - t_train, "num_samples": n,
                       "num_classes": len(class_names), "world_size": world, "device": str(device),
                       "amp": use_amp, "trunk_cached": forward is not model, **extra_metrics}
            save_checkpoint(out_path, {
                "format": CHECKPOINT_FORMAT, "config": cfg, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict() if use_amp else {}, "epoch": epoch + 1, "global_step": global_step,
                "class_names": [str(c) for c in class_names], "input_dim": input_dim, "metrics": metrics,
                "torch_version": str(torch.__version__),
            })
            if progress is not None:
                progress(global_step, total_steps, epoch=epoch + 1, epochs=config.epochs, step=steps_per_epoch,
                         loss=record["loss"], accuracy=record["accuracy"], rate=record["samples_per_s"],
                         lr=record["lr"], phase="epoch")
    if distributed:
        dist.barrier()
        if created_group:
            dist.destroy_process_group()
    if start_epoch >= config.epochs and rank == 0 and resume_from is not None and Path(resume_from) != out_path:
        save_checkpoint(out_path, load_checkpoint(resume_from))
    return out_path
