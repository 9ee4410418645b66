"""Batch-norm re-estimation ("AdaBN"): the cheapest adaptation to a new domain, no labels at all."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches, *, device: str | torch.device = "cpu",
                         exclude: tuple[nn.Module, ...] = ()) -> int:
    """Replace every BatchNorm's running mean/variance (but those in ``exclude``, e.g. the embedding's last
    BatchNorm) by the plain average over ``batches`` (an iterable of model inputs); other weights are
    untouched. Returns the number of samples seen. The model is left in eval mode."""
    skip = {id(m) for m in exclude}
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in skip]
    if not bns:
        raise ValueError("the model has no BatchNorm layer to re-estimate")
    saved = [(m.momentum, m.training) for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts the same
        m.train()
    seen = 0
    try:
        for x in batches:
            model(x.to(device))
            seen += int(x.shape[0])
    finally:
        for m, (mom, _) in zip(bns, saved):
            m.momentum = mom
        model.eval()
    if seen < 2:
        raise ValueError("need at least 2 samples to re-estimate BatchNorm statistics")
    return seen
