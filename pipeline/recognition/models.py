"""The project's trainable CosFace recognizer: a backbone plus a cosine classifier.

Three backbones share one model form and one training loop (``pipeline.recognition.training``):

- ``MLPHead`` ('mlp'): a small MLP over a frozen embedder's features (e.g. SFace's 128-d).
  With ``residual=True`` (default when in and out sizes match) its last layer starts at zero, so
  an untrained head is the identity and training starts from the frozen embedder's quality.
- ``MobileFaceNet`` ('mobilefacenet'): an image backbone over aligned 112x112 crops
  (Chen et al. 2018), with a width multiplier so CPU tests can run a tiny one.
- ``SFaceNet`` ('sface'): the pretrained SFace network itself (``pipeline.recognition.sface_torch``), fine-tuned
  whole or only in its last ``trainable_blocks`` stages; its embeddings start as SFace's.

``CosineClassifier`` returns cosine logits in [-1, 1]; the CosFace margin and scale live in
``pipeline.recognition.losses`` and only touch training. At inference ``class_logits`` gives the cosine
logits over the labeled classes, and ``max_logit_and_argmax`` what later stages need.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.features import check_embeddings, l2_normalize
from pipeline.recognition.checkpoint import load_checkpoint
from pipeline.recognition.embedders import Embedder, check_crops

IMAGE_BACKBONES = ("mobilefacenet", "sface")
PRETRAINED_BACKBONES = ("sface",)  # start from published weights
FEATURE_BACKBONES = ("mlp",)
BACKBONES = FEATURE_BACKBONES + IMAGE_BACKBONES


# --------------------------------------------------------------------------- backbones
class MLPHead(nn.Module):
    """(B, in_dim) features -> (B, out_dim) embeddings (not normalised; the classifier normalises)."""

    def __init__(
        self, in_dim: int, out_dim: int, hidden_dim: int = 512, num_layers: int = 2,
        dropout: float = 0.0, residual: bool | None = None,
    ) -> None:
        super().__init__()
        if in_dim <= 0 or out_dim <= 0 or hidden_dim <= 0 or num_layers < 1:
            raise ValueError("MLPHead sizes must be positive and num_layers >= 1")
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.residual = (in_dim == out_dim) if residual is None else bool(residual)
        if self.residual and in_dim != out_dim:
            raise ValueError(f"a residual head needs in_dim == out_dim, got {in_dim} and {out_dim}")
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.PReLU(hidden_dim)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden_dim
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, out_dim)
        if self.residual:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"MLPHead expects (B, {self.in_dim}) features, got {tuple(x.shape)}")
        y = self.out(self.body(x))
        return x + y if self.residual else y


class _ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1, p: int = 0, groups: int = 1, act: bool = True):
        mods: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            mods.append(nn.PReLU(cout))
        super().__init__(*mods)


class _DepthWise(nn.Module):
    """MobileFaceNet bottleneck: 1x1 expand, 3x3 depthwise, 1x1 linear project (+ residual)."""

    def __init__(self, cin: int, cout: int, groups: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.block = nn.Sequential(
            _ConvBN(cin, groups, 1),
            _ConvBN(groups, groups, 3, stride, 1, groups=groups),
            _ConvBN(groups, cout, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    """(B, 3, 112, 112) float -> (B, embedding_dim). ``width=1`` is the published network (~1 M params)."""

    def __init__(self, embedding_dim: int = 128, width: float = 1.0) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")

        def c(n: int) -> int:
            return max(8, int(round(n * width)))

        def stage(cin: int, cout: int, groups: int, n: int) -> list[nn.Module]:
            return [_DepthWise(cin, cout, groups, 1, True) if cin == cout else _DepthWise(cin, cout, groups, 1, False)
                    for _ in range(n)]

        c64, c128, c512 = c(64), c(128), c(512)
        self.features = nn.Sequential(
            _ConvBN(3, c64, 3, 2, 1),  # 56x56
            _ConvBN(c64, c64, 3, 1, 1, groups=c64),
            _DepthWise(c64, c64, c(128), 2, False),  # 28x28
            *stage(c64, c64, c(128), 4),
            _DepthWise(c64, c128, c(256), 2, False),  # 14x14
            *stage(c128, c128, c(256), 6),
            _DepthWise(c128, c128, c(512), 2, False),  # 7x7
            *stage(c128, c128, c(256), 2),
            _ConvBN(c128, c512, 1),
            _ConvBN(c512, c512, 7, 1, 0, groups=c512, act=False),  # global depthwise conv
        )
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(c512, embedding_dim, bias=False),
                                       nn.BatchNorm1d(embedding_dim))
        self.embedding_dim = embedding_dim
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, 112, 112):
            raise ValueError(f"MobileFaceNet expects (B, 3, 112, 112) input, got {tuple(x.shape)}")
        return self.embedding(self.features(x))


class CosineClassifier(nn.Module):
    """cos(theta) between L2-normalised embeddings and L2-normalised class weights: (B, d) -> (B, C)."""

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings.float(), dim=1), F.normalize(self.weight.float(), dim=1))


class RecognizerModel(nn.Module):
    """backbone + cosine classifier; ``forward`` returns (unnormalised embeddings, cosine logits)."""

    def __init__(self, backbone: nn.Module, classifier: CosineClassifier) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.backbone(x)
        return emb, self.classifier(emb)


def build_model(config: dict[str, Any], num_classes: int, input_dim: int | None = None, *,
                pretrained: bool = True) -> RecognizerModel:
    """The model a (Train)config dict describes. ``input_dim`` is required for the 'mlp' backbone.

    ``pretrained=False`` skips reading published weights ('sface'): a checkpoint's state dict is
    about to replace them anyway."""
    name = config["backbone"]
    if name == "mlp":
        if not input_dim:
            raise ValueError("the 'mlp' backbone needs the input feature size (input_dim)")
        out_dim = int(config.get("embedding_dim") or input_dim)
        backbone: nn.Module = MLPHead(input_dim, out_dim, int(config.get("hidden_dim", 512)),
                                      int(config.get("mlp_layers", 2)), float(config.get("dropout", 0.0)),
                                      config.get("residual"))
    elif name == "mobilefacenet":
        out_dim = int(config.get("embedding_dim") or 128)
        backbone = MobileFaceNet(out_dim, float(config.get("width", 1.0)))
    elif name == "sface":
        from pipeline.recognition.sface_torch import EMBEDDING_DIM, SFaceNet, load_sface_torch

        out_dim = int(config.get("embedding_dim") or EMBEDDING_DIM)
        if out_dim != EMBEDDING_DIM:
            raise ValueError(f"the 'sface' backbone gives {EMBEDDING_DIM}-d embeddings, not {out_dim}")
        # raw_input=False: the training loop and crops_to_tensor already map pixels to (x - 127.5) / 128
        kwargs = dict(raw_input=False, dropout=float(config.get("dropout", 0.0)),
                      freeze_bn=bool(config.get("freeze_bn", True)))
        backbone = load_sface_torch(**kwargs) if pretrained else SFaceNet(**kwargs)
        backbone.set_trainable(config.get("trainable_blocks"))
    else:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    return RecognizerModel(backbone, CosineClassifier(out_dim, num_classes))


# --------------------------------------------------------------------------- image input
def crops_to_tensor(crops: np.ndarray) -> torch.Tensor:
    """(B, 112, 112, 3) uint8 BGR -> (B, 3, 112, 112) float32 RGB scaled to about [-1, 1]."""
    crops = check_crops(crops)
    x = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).permute(0, 3, 1, 2).float()
    return (x - 127.5) / 128.0


# --------------------------------------------------------------------------- inference
@dataclass
class Recognizer:
    """A trained recognizer loaded from a checkpoint, in eval mode."""

    model: RecognizerModel
    config: dict[str, Any]
    class_names: np.ndarray
    input_dim: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 256
    _fast: dict = field(default_factory=dict, repr=False)  # {"ov": compiled backbone or None, made once;
    # "seen": faces embedded so far}

    @property
    def backbone(self) -> str:
        return str(self.config["backbone"])

    @property
    def dim(self) -> int:
        return int(self.model.classifier.weight.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.class_names.shape[0])

    @torch.inference_mode()
    def _run(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        embs, logits = [], []
        for i in range(0, x.shape[0], self.batch_size):
            e, c = self.model(x[i : i + self.batch_size].to(self.device))
            embs.append(F.normalize(e.float(), dim=1).cpu())
            logits.append(c.float().cpu())
        return torch.cat(embs).numpy(), torch.cat(logits).numpy()

    def _check_features(self, embeddings: np.ndarray) -> np.ndarray:
        if self.backbone not in FEATURE_BACKBONES:
            raise ValueError(f"a {self.backbone!r} recognizer embeds crops, not features; use embed_crops")
        emb = check_embeddings(embeddings)
        if emb.shape[1] != self.input_dim:
            raise ValueError(f"this head takes {self.input_dim}-d features, got {emb.shape[1]}-d")
        return emb

    def embed_features(self, embeddings: np.ndarray) -> np.ndarray:
        """MLP heads: frozen-embedder features (N, input_dim) -> (N, dim) float32, L2-normalised."""
        return self._run(torch.from_numpy(self._check_features(embeddings)))[0]

    def features_and_logits(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MLP heads: input features -> (embeddings (N, dim), cosine logits (N, C))."""
        return self._run(torch.from_numpy(self._check_features(embeddings)))

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """Image backbones: (B, 112, 112, 3) uint8 BGR crops -> (B, dim) float32, L2-normalised. On the CPU the
        backbone runs through OpenVINO where it can (``pipeline.recognition.ov_infer``), else through torch."""
        if self.backbone not in IMAGE_BACKBONES:
            raise ValueError(f"a {self.backbone!r} recognizer embeds features, not crops; use crops_and_logits")
        x = crops_to_tensor(crops)
        fast = self._compiled_backbone(x)
        if fast is None:
            return self._run(x)[0]
        out = [fast(x[i:i + self.batch_size].numpy()) for i in range(0, x.shape[0], self.batch_size)]
        return l2_normalize(np.concatenate(out)).astype(np.float32)

    def _compiled_backbone(self, x: torch.Tensor):
        """The backbone compiled by OpenVINO (once, when this recognizer has been asked for ``WORTH_IT`` faces in
        all, this batch included: callers that embed a large set in small batches get it too), or None (GPU, a
        few faces, or it cannot be compiled)."""
        from pipeline.recognition import ov_infer

        if self.device.type != "cpu" or len(x) == 0:
            return None
        if "ov" not in self._fast:
            self._fast["seen"] = self._fast.get("seen", 0) + len(x)
            if self._fast["seen"] < ov_infer.WORTH_IT:  # a few faces: torch is as quick as compiling
                return None
            self._fast["ov"] = ov_infer.compile_module(self.model.backbone, x[:2])
        return self._fast["ov"]

    def crops_and_logits(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.backbone not in IMAGE_BACKBONES:
            raise ValueError(f"a {self.backbone!r} recognizer embeds features, not crops; use embed_features")
        return self._run(crops_to_tensor(crops))

    @torch.inference_mode()
    def logits_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine logits (N, C) for embeddings already in this recognizer's output space (N, dim)."""
        emb = check_embeddings(embeddings)
        if emb.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim}-d recognizer embeddings, got {emb.shape[1]}-d")
        out = [self.model.classifier(torch.from_numpy(emb[i : i + 4096]).to(self.device)).cpu()
               for i in range(0, len(emb), 4096)]
        return torch.cat(out).numpy().astype(np.float32)


def load_recognizer(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> Recognizer:
    """Load a checkpoint written by ``pipeline.recognition.training.train`` for inference."""
    ckpt = load_checkpoint(checkpoint_path, map_location="cpu")
    model = build_model(ckpt["config"], len(ckpt["class_names"]), ckpt.get("input_dim"), pretrained=False)
    model.load_state_dict(ckpt["model"])
    dev = torch.device(device)
    model.to(dev).eval()
    return Recognizer(model=model, config=dict(ckpt["config"]), class_names=np.asarray(ckpt["class_names"], dtype=str),
                      input_dim=ckpt.get("input_dim"), metrics=dict(ckpt.get("metrics", {})),
                      path=Path(checkpoint_path), device=dev)


def class_logits(recognizer: Recognizer, embeddings: np.ndarray, *, already_embedded: bool = False) -> np.ndarray:
    """COSINE logits (N, C) float32 in [-1, 1] over the recognizer's labeled classes (no scale, no margin).

    For an MLP head, ``embeddings`` are the frozen embedder's features the head was trained on
    (e.g. SFace features from ``python -m pipeline embed``), unless ``already_embedded=True`` says
    they are the head's own output embeddings. For an image backbone they are always the
    backbone's own embeddings (as ``TorchEmbedder`` writes them).
    """
    if recognizer.backbone in FEATURE_BACKBONES and not already_embedded:
        return recognizer.features_and_logits(embeddings)[1]
    return recognizer.logits_from_embeddings(embeddings)


def max_logit_and_argmax(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) logits -> (max logit (N,) float32, arg-max class (N,) int64)."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ValueError(f"logits must be (N, C) with C >= 1, got shape {logits.shape}")
    if not np.isfinite(logits).all():
        raise ValueError("logits contain NaN or infinite values")
    arg = np.argmax(logits, axis=1).astype(np.int64)
    return logits[np.arange(len(logits)), arg].astype(np.float32), arg


# --------------------------------------------------------------------------- Embedder protocol
class TorchEmbedder:
    """The Embedder protocol over an image-backbone recognizer (crops in, its embeddings out)."""

    def __init__(self, recognizer: Recognizer, name: str | None = None) -> None:
        if recognizer.backbone not in IMAGE_BACKBONES:
            raise ValueError(f"TorchEmbedder needs an image backbone, got {recognizer.backbone!r}; "
                             "use FeatureHeadEmbedder for MLP heads")
        self.recognizer = recognizer
        self.name = name or f"cosface-{recognizer.backbone}"
        self.dim = recognizer.dim

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return self.recognizer.embed_crops(crops)


class FeatureHeadEmbedder:
    """The Embedder protocol for an MLP head: a frozen base embedder (e.g. SFace) then the head."""

    def __init__(self, base: Embedder, recognizer: Recognizer, name: str | None = None) -> None:
        if recognizer.backbone not in FEATURE_BACKBONES:
            raise ValueError(f"FeatureHeadEmbedder needs an MLP head, got {recognizer.backbone!r}")
        if base.dim != recognizer.input_dim:
            raise ValueError(f"base embedder gives {base.dim}-d features, the head takes {recognizer.input_dim}-d")
        self.base, self.recognizer = base, recognizer
        self.name = name or f"{base.name}+cosface-mlp"
        self.dim = recognizer.dim

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return self.recognizer.embed_features(self.base.embed(crops))


def make_embedder(*, checkpoint: str | Path | None = None, onnx_model: str | Path | None = None,
                  device: str = "cpu") -> Embedder:
    """The embedder the settings describe: ``onnx_model`` (default ``$FACECURATE_EMBEDDER_ONNX``, else the
    bundled SFace) as the frozen embedder; with an MLP-head ``checkpoint`` that embedder then the head; with
    an image-backbone ``checkpoint`` the trained network itself."""
    import os

    from pipeline.recognition.embedders import OnnxEmbedder

    rec = load_recognizer(checkpoint, device) if checkpoint else None
    if rec is not None and rec.backbone in IMAGE_BACKBONES:
        return TorchEmbedder(rec)
    base = OnnxEmbedder(onnx_model or os.environ.get("FACECURATE_EMBEDDER_ONNX") or None)
    return base if rec is None else FeatureHeadEmbedder(base, rec)
