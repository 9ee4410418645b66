"""CosFace margin and the weighted cross-entropy: the margin hits the target logit only."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.recognition.losses import CosFaceLoss, CosFaceMargin, weighted_cross_entropy


def _cosines(b: int = 6, c: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cos = torch.rand(b, c, generator=g) * 2 - 1
    targets = torch.randint(0, c, (b,), generator=g)
    return cos, targets


def test_defaults_are_cosface_paper_values():
    m = CosFaceMargin()
    assert (m.scale, m.margin) == (64.0, 0.35)


def test_margin_is_subtracted_from_the_target_cosine_only():
    cos, y = _cosines()
    out = CosFaceMargin(scale=64, margin=0.35)(cos, y)
    diff = out - 64 * cos  # -s*m on the target, 0 elsewhere
    expected = torch.zeros_like(cos)
    expected[torch.arange(len(y)), y] = -64 * 0.35
    torch.testing.assert_close(diff, expected)


def test_margin_makes_the_target_harder():
    cos, y = _cosines(32, 10, seed=1)
    with_margin = CosFaceLoss(64, 0.35)(cos, y)
    without = CosFaceLoss(64, 0.0)(cos, y)
    assert with_margin > without
    torch.testing.assert_close(without, F.cross_entropy(64 * cos, y))


def test_margin_does_not_mutate_its_input():
    cos, y = _cosines()
    before = cos.clone()
    CosFaceMargin()(cos, y)
    torch.testing.assert_close(cos, before)


def test_weighted_ce_with_unit_weights_is_plain_ce():
    cos, y = _cosines(16, 7, seed=2)
    logits = 30 * cos
    torch.testing.assert_close(weighted_cross_entropy(logits, y, torch.ones(16)), F.cross_entropy(logits, y))
    torch.testing.assert_close(weighted_cross_entropy(logits, y), F.cross_entropy(logits, y))


def test_weights_scale_each_sample_and_zero_removes_it():
    cos, y = _cosines(8, 4, seed=3)
    logits = 10 * cos
    per = F.cross_entropy(logits, y, reduction="none")
    w = torch.tensor([1, 0, 0.5, 2, 0, 1, 1, 0.25])
    torch.testing.assert_close(weighted_cross_entropy(logits, y, w), (per * w).mean())
    logits = logits.clone().requires_grad_(True)
    weighted_cross_entropy(logits, y, w).backward()
    assert torch.all(logits.grad[w == 0] == 0)
    assert torch.all(logits.grad[w > 0].abs().sum(1) > 0)


def test_pseudo_label_weights_from_p_minus():
    cos, y = _cosines(4, 3, seed=4)
    p_minus = torch.tensor([0.0, 0.5, 0.9, 1.0])
    w = (1 - p_minus) ** 2.0
    loss_fn = CosFaceLoss()
    per = F.cross_entropy(CosFaceMargin()(cos, y), y, reduction="none")
    torch.testing.assert_close(loss_fn(cos, y, w), (per * w).mean())


@pytest.mark.parametrize(
    "cos, y, w",
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.int64), None),  # logits not 2-D
        (torch.zeros(3, 4), torch.zeros(2, dtype=torch.int64), None),  # wrong batch
        (torch.zeros(3, 4), torch.zeros(3, dtype=torch.int32), None),  # not int64
        (torch.zeros(3, 4), torch.tensor([0, 1, 4]), None),  # out of range
        (torch.zeros(3, 4), torch.zeros(3, dtype=torch.int64), torch.ones(2)),  # weight shape
        (torch.zeros(3, 4), torch.zeros(3, dtype=torch.int64), torch.tensor([1.0, -1.0, 1.0])),  # negative
    ],
)
def test_bad_inputs_raise(cos, y, w):
    with pytest.raises(ValueError):
        CosFaceLoss()(cos, y, w)


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError):
        CosFaceMargin(scale=0)
    with pytest.raises(ValueError):
        CosFaceMargin(margin=1.5)
