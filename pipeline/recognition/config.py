"""The training configuration: one typed dataclass, stored whole in every checkpoint."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pipeline.recognition.losses import DEFAULT_MARGIN, DEFAULT_SCALE
from pipeline.recognition.models import BACKBONES, FEATURE_BACKBONES, PRETRAINED_BACKBONES


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
    amp: bool = True  # float16 autocast on CUDA; bfloat16 for image backbones on CPUs with native bf16
    flip: bool = True  # image backbones: random horizontal flip
    aligned: bool = False  # image backbones: paths are ready 112x112 crops
    distributed: bool | None = None  # None: DDP when WORLD_SIZE > 1
    num_threads: int = 0  # CPU threads for torch (0: leave as is)
    log_every: int = 10  # progress callback every this many steps
    init_checkpoint: str | None = None  # start the backbone from this checkpoint's weights (same backbone)
    close_class_threshold: float | None = None  # leave classes whose starting centroids have cosine >= this out of
    # each other's softmax (split people: pipeline.retraining.split_people); needs the class-means classifier start

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
            from pipeline.recognition.sface_torch import NUM_STAGES

            if self.backbone != "sface":
                raise ValueError("trainable_blocks applies to the 'sface' backbone only")
            if not 1 <= int(self.trainable_blocks) <= NUM_STAGES:
                raise ValueError(f"trainable_blocks must be in [1, {NUM_STAGES}] or None, got {self.trainable_blocks}")

        if self.close_class_threshold is not None:
            if not -1.0 <= float(self.close_class_threshold) <= 1.0:
                raise ValueError(f"close_class_threshold must be a cosine in [-1, 1], got {self.close_class_threshold}")
            if self.classifier_init == "random":
                raise ValueError("close_class_threshold needs the class-means classifier start (classifier_init)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
