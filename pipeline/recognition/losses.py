"""CosFace: the large margin cosine loss (Wang et al., CVPR 2018), and a per-sample weighted cross-entropy.

``CosFaceMargin`` only rewrites cosine logits: given cos(theta_j) for every class j and the
target class y it returns ``s * (cos - m * onehot(y))``, so the margin ``m`` is taken off the
target class's cosine only. The cross-entropy of those logits is the CosFace loss.

``weighted_cross_entropy`` takes a per-sample weight so later stages can down-weight
pseudo-labeled faces by ``(1 - p_minus) ** gamma`` (weight 1 for labeled faces).

``ignore`` (B, C) bool leaves chosen negative classes out of a sample's softmax (their logit is set
to -inf; the target class is never left out): pseudo-classes whose centroids are close may be one
person split by the clustering, and must not be pushed apart (``pipeline.retraining.split_people``).

Defaults s=64, m=0.35 are the CosFace paper's (its best LFW/MegaFace setting, and the values
the clustering paper we follow uses); with a few hundred classes s=64 still gives the
softmax enough range (the target probability saturates at cos margins of ~0.1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_SCALE = 64.0
DEFAULT_MARGIN = 0.35


def _check_logits_targets(cosine: torch.Tensor, targets: torch.Tensor) -> None:
    if cosine.ndim != 2:
        raise ValueError(f"cosine logits must be (B, C), got shape {tuple(cosine.shape)}")
    if targets.ndim != 1 or targets.shape[0] != cosine.shape[0]:
        raise ValueError(
            f"targets must be ({cosine.shape[0]},) to match logits {tuple(cosine.shape)}, got {tuple(targets.shape)}"
        )
    if targets.dtype != torch.int64:
        raise ValueError(f"targets must be int64 class ids, got {targets.dtype}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= cosine.shape[1]):
        raise ValueError(f"targets must lie in [0, {cosine.shape[1]}), got [{int(targets.min())}, {int(targets.max())}]")


class CosFaceMargin(nn.Module):
    """``s * (cos - m * onehot(target))``: cosine logits (B, C) + int64 targets (B,) -> scaled logits (B, C)."""

    def __init__(self, scale: float = DEFAULT_SCALE, margin: float = DEFAULT_MARGIN) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if not 0 <= margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {margin}")
        self.scale = float(scale)
        self.margin = float(margin)

    def forward(self, cosine: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_logits_targets(cosine, targets)
        onehot = torch.zeros_like(cosine).scatter_(1, targets[:, None], 1.0)
        return self.scale * (cosine - self.margin * onehot)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, margin={self.margin}"


def weighted_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the batch of ``w_i * CE(logits_i, y_i)``; ``weights=None`` is plain cross-entropy.

    The mean divides by the batch size, not the weight sum, so a batch of low-weight
    pseudo-labeled faces contributes less gradient than a labeled batch of the same size.
    """
    _check_logits_targets(logits, targets)
    per_sample = F.cross_entropy(logits.float(), targets, reduction="none")
    if weights is None:
        return per_sample.mean()
    if weights.shape != targets.shape:
        raise ValueError(f"weights must have shape {tuple(targets.shape)}, got {tuple(weights.shape)}")
    if not torch.isfinite(weights).all() or bool((weights < 0).any()):
        raise ValueError("weights must be finite and non-negative")
    return (per_sample * weights.to(per_sample.dtype)).mean()


class CosFaceLoss(nn.Module):
    """Margin + weighted cross-entropy in one module: ``loss(cosine, targets, weights=None)``."""

    def __init__(self, scale: float = DEFAULT_SCALE, margin: float = DEFAULT_MARGIN) -> None:
        super().__init__()
        self.margin = CosFaceMargin(scale, margin)

    def forward(
        self, cosine: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
        ignore: torch.Tensor | None = None,
    ) -> torch.Tensor:
        logits = self.margin(cosine, targets)
        if ignore is not None:
            logits = ignore_negatives(logits, targets, ignore)
        return weighted_cross_entropy(logits, targets, weights)


def ignore_negatives(logits: torch.Tensor, targets: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """``logits`` (B, C) with ``-inf`` where ``ignore`` (B, C) bool is set, except at each row's target."""
    _check_logits_targets(logits, targets)
    if ignore.shape != logits.shape or ignore.dtype != torch.bool:
        raise ValueError(f"ignore must be a bool tensor of shape {tuple(logits.shape)}, got {ignore.dtype} "
                         f"{tuple(ignore.shape)}")
    keep_target = torch.zeros_like(ignore).scatter_(1, targets[:, None], True)
    return logits.masked_fill(ignore & ~keep_target, float("-inf"))
