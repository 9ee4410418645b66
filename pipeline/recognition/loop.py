"""The training loop behind ``pipeline.recognition.training``, one step per function.

``run_training`` = set up devices (``_setup``) -> build the model and its inputs (``_build``) ->
optimiser and schedule (``_optimise``) -> resume (``_resume``) -> per epoch ``_run_epoch`` and
``_end_epoch`` (checkpoint, progress).
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

from pipeline.progress import Progress
from pipeline.recognition.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from pipeline.recognition.config import TrainConfig
from pipeline.recognition.losses import CosFaceLoss
from pipeline.recognition.models import IMAGE_BACKBONES, PRETRAINED_BACKBONES, RecognizerModel, build_model

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- devices
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
    from pipeline.recognition.sface_torch import NUM_STAGES

    frozen = config.backbone == "sface" and config.trainable_blocks is not None and config.trainable_blocks < NUM_STAGES
    if config.cache_trunk and not frozen:
        raise ValueError("cache_trunk needs the 'sface' backbone with trainable_blocks below its 15 stages")
    return frozen and (device.type == "cpu" if config.cache_trunk is None else bool(config.cache_trunk))


def _trunk_activations(model: RecognizerModel, crops: np.ndarray, config: TrainConfig, device: torch.device,
                       out_path: Path, progress: Progress | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Run the frozen SFace trunk once over the crops (and, with ``flip``, over their mirror images)."""
    from pipeline.recognition.sface_torch import cache_trunk_activations, split_for_finetune

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
    fast = _compiled_backbone(net, data, image, device, len(label_ids))
    sums = torch.zeros(num_classes, classifier.weight.shape[1], dtype=torch.float64)
    for i in range(0, len(label_ids), batch):
        idx = np.arange(i, min(i + batch, len(label_ids)))
        x = _batch_input(data, idx, image, None)
        emb = torch.from_numpy(fast(x.numpy())) if fast is not None else net(x.to(device))[0]
        emb = torch.nn.functional.normalize(emb.float(), dim=1)
        sums.index_add_(0, torch.from_numpy(label_ids[idx]), emb.cpu().double())
    classifier.weight.copy_(torch.nn.functional.normalize(sums, dim=1).to(classifier.weight))
    net.train(was_training)


def _compiled_backbone(net: torch.nn.Module, data: np.ndarray, image: bool, device: torch.device, n: int):
    """A whole image network (crops in, not cached activations) compiled by OpenVINO for the class means, or None:
    twice as fast as torch on the CPU (2,482 crops: 70 s in torch), the same embeddings to float32 rounding."""
    from pipeline.recognition import ov_infer

    backbone = getattr(net, "backbone", None)
    if not image or data.dtype != np.uint8 or backbone is None or device.type != "cpu" or n < ov_infer.WORTH_IT:
        return None
    return ov_infer.compile_module(backbone, _batch_input(data, np.arange(2), True, None))


# --------------------------------------------------------------------------- one training
@dataclass
class _Run:
    """Everything one training holds while it runs."""

    config: TrainConfig
    label_ids: np.ndarray
    class_names: np.ndarray
    weights: np.ndarray | None
    out_path: Path
    progress: Progress | None
    image: bool
    input_dim: int | None
    rank: int = 0
    world: int = 1
    distributed: bool = False
    created_group: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    use_amp: bool = False  # float16 autocast with a GradScaler (CUDA)
    cpu_bf16: bool = False  # bfloat16 autocast, no scaler (an image backbone on a CPU with native bfloat16)
    model: Any = None
    forward: Any = None  # the model, or a head over cached trunk activations
    net: Any = None  # forward, wrapped for DDP when distributed
    data: Any = None
    flipped: np.ndarray | None = None
    ignore: torch.Tensor | None = None  # (C, C) bool: negatives left out of each class's softmax
    opt: Any = None
    sched: Any = None
    scaler: Any = None
    sampler: Any = None
    batch: int = 1
    steps_per_epoch: int = 1
    total_steps: int = 1
    start_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reporting(self) -> bool:
        return self.progress is not None and self.rank == 0


def _setup(run: _Run) -> None:
    """Process group (DDP under torchrun), device, threads and AMP."""
    config = run.config
    rank, world, local_rank = _dist_env()
    run.distributed = config.distributed if config.distributed is not None else world > 1
    if run.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo")
        run.created_group = True
    run.rank, run.world = (dist.get_rank(), dist.get_world_size()) if run.distributed else (0, 1)
    run.device = _pick_device(config, local_rank, run.distributed)
    if run.device.type == "cuda":
        torch.cuda.set_device(run.device)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    run.use_amp = bool(config.amp and run.device.type == "cuda")
    run.cpu_bf16 = bool(config.amp and run.device.type == "cpu" and run.image and cpu_has_bf16())


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 natively (AVX512-BF16 or AMX): there, bfloat16 autocast trains a fine-tuned
    SFace about 1.6x faster (``bench/results/retrain_time.md``); elsewhere it is emulated and slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _check_trunk_cache(trunk_cache: tuple[np.ndarray, np.ndarray | None], n: int, config: TrainConfig) -> None:
    from pipeline.recognition.sface_torch import trunk_output_shape

    acts, flipped = trunk_cache
    want = (n, *trunk_output_shape(config.trainable_blocks))
    if tuple(acts.shape) != want or (flipped is not None and tuple(flipped.shape) != want):
        raise ValueError(f"trunk_cache arrays must be {want}, got {acts.shape} and "
                         f"{None if flipped is None else flipped.shape}")
    if config.flip and flipped is None:
        raise ValueError("trunk_cache needs the mirrored crops' activations too when config.flip is on")


def _build(run: _Run, data: np.ndarray, resume_from: str | Path | None,
           trunk_cache: tuple[np.ndarray, np.ndarray | None] | None = None) -> None:
    """The model (from the parent's backbone unless resuming), cached trunk inputs, the classifier's start,
    and the close-class mask (from the starting classifier, so a resumed run rebuilds the same one)."""
    config = run.config
    torch.manual_seed(config.seed)
    run.model = build_model(asdict(config), len(run.class_names), run.input_dim).to(run.device)
    if config.init_checkpoint and resume_from is None:
        _init_backbone(run.model, config)
    run.forward, run.data = run.model, data
    if trunk_cache is not None and not _use_trunk_cache(config, run.device):
        raise ValueError("trunk_cache is given but this training does not run on a frozen SFace trunk's activations")
    if _use_trunk_cache(config, run.device):
        if trunk_cache is not None:
            _check_trunk_cache(trunk_cache, len(data), config)
            split_for_finetune_only(run.model, config)
            run.data, run.flipped = trunk_cache
        else:
            run.data, run.flipped = _trunk_activations(run.model, data, config, run.device, run.out_path,
                                                       run.progress if run.rank == 0 else None)
        run.forward = _CachedHead(run.model)
    init = config.classifier_init
    if init == "class_means" or (init == "auto" and (not run.image or config.backbone in PRETRAINED_BACKBONES)):
        _init_class_means(run.forward, run.data, run.label_ids, len(run.class_names), run.image, run.device,
                          run.model.classifier)
        if config.close_class_threshold is not None:
            from pipeline.retraining.split_people import close_class_mask

            w = run.model.classifier.weight.detach().float().cpu().numpy()
            run.ignore = torch.from_numpy(close_class_mask(w, float(config.close_class_threshold))).to(run.device)


def split_for_finetune_only(model: RecognizerModel, config: TrainConfig) -> None:
    """Freeze the SFace trunk as ``_trunk_activations`` does, without running it."""
    from pipeline.recognition.sface_torch import split_for_finetune

    split_for_finetune(model.backbone, config.trainable_blocks)


def _optimise(run: _Run) -> None:
    """Optimiser over the trainable parameters, the sampler, and warm-up then cosine decay per step."""
    config = run.config
    params = [p for p in run.model.parameters() if p.requires_grad]  # a partly frozen SFace trains only its head
    if config.optimizer == "sgd":
        run.opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    else:
        run.opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    n = len(run.label_ids)
    run.sampler = DistributedSampler(range(n), num_replicas=run.world, rank=run.rank, shuffle=True, seed=config.seed)
    per_rank = len(run.sampler)
    run.batch = max(1, min(config.batch_size, per_rank))
    run.steps_per_epoch = per_rank // run.batch + (1 if per_rank % run.batch >= 2 else 0)
    run.total_steps = run.steps_per_epoch * config.epochs
    warmup, total = int(config.warmup_epochs * run.steps_per_epoch), run.total_steps

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    run.sched = torch.optim.lr_scheduler.LambdaLR(run.opt, lr_lambda)
    run.scaler = torch.amp.GradScaler("cuda", enabled=run.use_amp)


_RESUME_KEYS = ("backbone", "embedding_dim", "hidden_dim", "mlp_layers", "width", "residual", "trainable_blocks")


def _resume(run: _Run, resume_from: str | Path) -> None:
    """Continue from a checkpoint of the same training: weights, optimiser, schedule, history."""
    ckpt, cfg = load_checkpoint(resume_from), asdict(run.config)
    if list(ckpt["class_names"]) != [str(c) for c in run.class_names]:
        raise ValueError(f"cannot resume from {resume_from}: its classes differ from this training set's")
    for key in _RESUME_KEYS:
        if ckpt["config"].get(key) != cfg.get(key):
            raise ValueError(f"cannot resume from {resume_from}: config {key!r} was "
                             f"{ckpt['config'].get(key)!r}, now {cfg.get(key)!r}")
    if ckpt.get("input_dim") != run.input_dim:
        raise ValueError(f"cannot resume: checkpoint input size {ckpt.get('input_dim')}, data {run.input_dim}")
    run.model.load_state_dict(ckpt["model"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.sched.load_state_dict(ckpt["scheduler"])
    if run.use_amp and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.start_epoch, run.global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
    run.history = list(ckpt.get("metrics", {}).get("history", []))
    log.info("resuming from %s at epoch %d", resume_from, run.start_epoch)


def _step(run: _Run, criterion: CosFaceLoss, idx: np.ndarray, flip: torch.Tensor | None) -> tuple[float, float]:
    """One optimiser step on rows ``idx``: (loss, correct predictions)."""
    x = _batch_input(run.data, idx, run.image, flip, run.flipped).to(run.device, non_blocking=True)
    y = torch.from_numpy(run.label_ids[idx]).to(run.device, non_blocking=True)
    w = None if run.weights is None else torch.from_numpy(run.weights[idx]).to(run.device, non_blocking=True)
    with torch.autocast(device_type=run.device.type, dtype=torch.bfloat16 if run.cpu_bf16 else torch.float16,
                        enabled=run.use_amp or run.cpu_bf16):
        _, cosine = run.net(x)
    loss = criterion(cosine.float(), y, w, None if run.ignore is None else run.ignore[y])
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.opt)
    run.scaler.update()
    run.sched.step()
    run.global_step += 1
    return float(loss.detach()), float((cosine.detach().argmax(1) == y).sum())


def _run_epoch(run: _Run, epoch: int, criterion: CosFaceLoss) -> dict[str, Any]:
    """One pass over this rank's share; the epoch's record (loss and accuracy summed over ranks)."""
    config = run.config
    run.net.train()
    run.sampler.set_epoch(epoch)
    order = np.fromiter(iter(run.sampler), dtype=np.int64, count=len(run.sampler))
    flip_gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 7919 + run.rank)
    t_epoch = t_log = time.perf_counter()
    loss_sum = correct = 0.0
    seen = seen_log = 0
    for step in range(run.steps_per_epoch):
        idx = order[step * run.batch : (step + 1) * run.batch]
        flip = torch.rand(len(idx), generator=flip_gen) < 0.5 if (run.image and config.flip) else None
        loss, right = _step(run, criterion, idx, flip)
        loss_sum, correct = loss_sum + loss * len(idx), correct + right
        seen, seen_log = seen + len(idx), seen_log + len(idx)
        if run.reporting and (step + 1) % config.log_every == 0:
            now = time.perf_counter()
            run.progress(run.global_step, run.total_steps, epoch=epoch + 1, epochs=config.epochs, step=step + 1,
                         loss=loss, rate=seen_log * run.world / max(now - t_log, 1e-9),
                         lr=run.opt.param_groups[0]["lr"], phase="train")
            t_log, seen_log = now, 0
    stats = torch.tensor([loss_sum, correct, float(seen)], dtype=torch.float64)
    if run.distributed:
        stats = stats.to(run.device)
        dist.all_reduce(stats)
        stats = stats.cpu()
    secs = time.perf_counter() - t_epoch
    return {"epoch": epoch + 1, "loss": float(stats[0] / stats[2]), "accuracy": float(stats[1] / stats[2]),
            "seconds": round(secs, 3), "samples_per_s": float(stats[2]) / max(secs, 1e-9),
            "lr": run.opt.param_groups[0]["lr"]}


def _end_epoch(run: _Run, record: dict[str, Any], train_seconds: float, extra_metrics: dict[str, Any]) -> None:
    """Record the epoch, stop on divergence, write the checkpoint (rank 0) and report."""
    run.history.append(record)
    if not math.isfinite(record["loss"]):
        raise ValueError(f"training diverged at epoch {record['epoch']} (loss {record['loss']})")
    if run.rank != 0:
        return
    masked = 0 if run.ignore is None else int(run.ignore.sum()) // 2
    metrics = {"close_class_pairs_masked": masked, "history": run.history, "final_loss": record["loss"], "final_accuracy": record["accuracy"],
               "train_seconds": train_seconds, "num_samples": len(run.label_ids),
               "num_classes": len(run.class_names), "world_size": run.world, "device": str(run.device),
               "amp": "float16" if run.use_amp else "bfloat16" if run.cpu_bf16 else False,
               "trunk_cached": run.forward is not run.model, **extra_metrics}
    save_checkpoint(run.out_path, {
        "format": CHECKPOINT_FORMAT, "config": asdict(run.config), "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
        "scaler": run.scaler.state_dict() if run.use_amp else {}, "epoch": record["epoch"],
        "global_step": run.global_step, "class_names": [str(c) for c in run.class_names],
        "input_dim": run.input_dim, "metrics": metrics, "torch_version": str(torch.__version__),
    })
    if run.progress is not None:
        run.progress(run.global_step, run.total_steps, epoch=record["epoch"], epochs=run.config.epochs,
                     step=run.steps_per_epoch, loss=record["loss"], accuracy=record["accuracy"],
                     rate=record["samples_per_s"], lr=record["lr"], phase="epoch")


def run_training(
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
    trunk_cache: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> Path:
    """Train on ``data`` (features (N, D) or crops (N, 112, 112, 3)) with class ids (N,); the checkpoint's path.

    ``trunk_cache`` (activations, mirrored activations or None): the frozen SFace trunk's outputs for
    ``data``'s crops, computed by the caller (e.g. once for several trainings over the same faces)."""
    n = len(label_ids)
    if n < 2:
        raise ValueError(f"need at least 2 training samples, got {n}")
    image = config.backbone in IMAGE_BACKBONES
    run = _Run(config=config, label_ids=label_ids, class_names=class_names, weights=weights, out_path=Path(out_path),
               progress=progress, image=image, input_dim=None if image else int(data.shape[1]))
    _setup(run)
    _build(run, data, resume_from, trunk_cache)
    _optimise(run)
    if resume_from is not None:
        _resume(run, resume_from)
    run.net = run.forward
    if run.distributed:
        run.net = torch.nn.parallel.DistributedDataParallel(
            run.forward, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    criterion = CosFaceLoss(config.scale, config.margin)
    t_train, prior_seconds = time.perf_counter(), sum(h.get("seconds", 0.0) for h in run.history)
    for epoch in range(run.start_epoch, config.epochs):
        record = _run_epoch(run, epoch, criterion)
        _end_epoch(run, record, prior_seconds + time.perf_counter() - t_train, extra_metrics)
    if run.distributed:
        dist.barrier()
        if run.created_group:
            dist.destroy_process_group()
    if run.start_epoch >= config.epochs and run.rank == 0 and resume_from is not None and Path(resume_from) != run.out_path:
        save_checkpoint(run.out_path, load_checkpoint(resume_from))
    return run.out_path
