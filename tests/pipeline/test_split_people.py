"""Split people: close-class masks, cluster merging, and the masked CosFace loss / training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.recognition.checkpoint import load_checkpoint
from pipeline.recognition.losses import CosFaceLoss, ignore_negatives
from pipeline.retraining.split_people import class_centroids, close_class_mask, merge_close_clusters


def _unit(*rows):
    a = np.asarray(rows, np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_class_centroids_are_normalised_means_and_empty_classes_zero():
    emb = _unit([1, 0], [1, 0.2], [0, 1])
    c = class_centroids(emb, np.array([0, 0, 2]), 3)
    assert c.shape == (3, 2)
    np.testing.assert_allclose(np.linalg.norm(c[[0, 2]], axis=1), 1, atol=1e-6)
    np.testing.assert_array_equal(c[1], [0, 0])
    with pytest.raises(ValueError):
        class_centroids(emb, np.array([0, 3, 1]), 3)
    with pytest.raises(ValueError):
        class_centroids(emb, np.array([0, 1]), 3)


def test_close_class_mask_is_symmetric_off_diagonal_at_the_threshold():
    c = _unit([1, 0], [0.9, 0.1], [0, 1])
    m = close_class_mask(c, 0.9)
    assert m.dtype == bool and m.shape == (3, 3)
    assert m[0, 1] and m[1, 0] and not m[0, 2] and not m[1, 2]
    assert not m.diagonal().any()
    assert not close_class_mask(c, 0.9999).any()


def test_merge_close_clusters_joins_transitively_and_keeps_unclustered():
    emb = _unit([1, 0], [1, 0.01], [1, 0.3], [1, 0.31], [1, 0.6], [1, 0.61], [0, 1], [0.5, 0.5])
    labels = np.array([0, 0, 1, 1, 2, 2, 3, -1])
    # cos(0,1) ~ 0.957, cos(1,2) ~ 0.968, cos(0,2) ~ 0.86: a chain merges 0-1-2 at 0.95, not 3
    out = merge_close_clusters(emb, labels, 0.95)
    np.testing.assert_array_equal(out, [0, 0, 0, 0, 0, 0, 3, -1])
    np.testing.assert_array_equal(merge_close_clusters(emb, labels, 0.99), labels)
    assert merge_close_clusters(emb, np.full(8, -1), 0.5).tolist() == [-1] * 8


def test_ignore_negatives_masks_chosen_negatives_never_the_target():
    cos = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.7, 0.6]])
    y = torch.tensor([0, 1])
    ignore = torch.tensor([[True, True, False], [False, True, True]])
    out = ignore_negatives(cos, y, ignore)
    assert out[0, 0] == 0.9 and out[1, 1] == 0.7  # targets kept even when flagged
    assert out[0, 1] == float("-inf") and out[1, 2] == float("-inf")
    with pytest.raises(ValueError):
        ignore_negatives(cos, y, ignore[:, :2])


def test_masked_loss_equals_cross_entropy_without_the_masked_class():
    g = torch.Generator().manual_seed(0)
    cos = torch.rand(4, 5, generator=g) * 2 - 1
    cos[:, 3] = 0.95  # the split twin scores high: masking it must matter
    y = torch.tensor([0, 1, 2, 0])
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[0, 3] = mask[3, 0] = True  # class 3 is "the same person" as class 0
    loss = CosFaceLoss(64, 0.35)(cos, y, None, mask[y])
    logits = 64 * (cos - 0.35 * F.one_hot(y, 5))
    rows = [F.cross_entropy(logits[i, [c for c in range(5) if not (y[i] == 0 and c == 3)]][None],
                            torch.tensor([int(y[i])])) for i in range(4)]
    torch.testing.assert_close(loss, torch.stack(rows).mean())
    assert CosFaceLoss(64, 0.35)(cos, y) > loss  # leaving a negative out can only lower the loss


def test_training_masks_close_classes_from_the_starting_centroids(tmp_path):
    from pipeline.recognition.training import TrainConfig, train
    from pipeline.features import FeatureSet

    rng = np.random.default_rng(0)
    centres = _unit([1, 0, 0, 0], [0.99, 0.1, 0, 0], [0, 0, 1, 0])  # classes a and b: one person split
    x = np.concatenate([c + 0.01 * rng.standard_normal((6, 4)) for c in centres]).astype(np.float32)
    labels = np.repeat(["a", "b", "c"], 6)
    fs = FeatureSet(x / np.linalg.norm(x, axis=1, keepdims=True), np.arange(18).astype(str), labels)
    cfg = TrainConfig(backbone="mlp", epochs=1, batch_size=6, close_class_threshold=0.9, device="cpu")
    ck = load_checkpoint(train(cfg, fs, out_path=tmp_path / "m.pt"))
    assert ck["metrics"]["close_class_pairs_masked"] == 1
    with pytest.raises(ValueError):
        TrainConfig(backbone="mlp", close_class_threshold=0.9, classifier_init="random")
    with pytest.raises(ValueError):
        TrainConfig(backbone="mlp", close_class_threshold=2.0)


def test_reestimate_batchnorm_takes_the_new_domains_statistics():
    from pipeline.recognition.adapt import reestimate_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    lin = net[0].weight.detach().clone()
    data = torch.randn(40, 3) * 3 + 5
    seen = reestimate_batchnorm(net, (data[i:i + 10] for i in range(0, 40, 10)))
    assert seen == 40 and not net.training and net[1].momentum == 0.1
    with torch.no_grad():
        h = net[0](data)
    torch.testing.assert_close(net[1].running_mean, h.mean(0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(net[0].weight, lin)  # only statistics move
    with pytest.raises(ValueError):
        reestimate_batchnorm(torch.nn.Linear(3, 3), [data])


def test_reestimate_batchnorm_leaves_the_excluded_layers_alone():
    from pipeline.recognition.adapt import reestimate_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 4),
                              torch.nn.BatchNorm1d(4))
    kept = net[3].running_mean.clone(), net[3].running_var.clone()
    data = torch.randn(40, 3) * 3 + 5
    reestimate_batchnorm(net, [data], exclude=(net[3],))
    assert not torch.equal(net[1].running_mean, torch.zeros(4))  # re-estimated
    torch.testing.assert_close((net[3].running_mean, net[3].running_var), kept)
    with pytest.raises(ValueError):
        reestimate_batchnorm(net, [data], exclude=(net[1], net[3]))


def test_pseudo_training_set_merges_close_clusters_then_builds_the_set():
    from pipeline.retraining.recipe import Recipe, pseudo_training_set

    emb = _unit([1, 0], [1, 0.05], [1, 0.1], [1, 0.12], [0, 1], [0, 1], [0.7, 0.7])
    labels = np.array([0, 0, 1, 1, 2, 2, -1])
    p = np.array([0.0, 0.5, 0.1, 0.1, 0.2, np.nan, 0.3])
    state = np.array([0, 0, 0, 0, 0, 0, 0])
    rows, cls, w = pseudo_training_set(emb, labels, p, state, Recipe(weighting="hard"))
    np.testing.assert_array_equal(rows, [0, 1, 2, 3, 4, 5])  # unclustered face left out
    assert len(np.unique(cls)) == 3 and (w == 1).all()
    rows, cls, w = pseudo_training_set(emb, labels, p, state, Recipe(weighting="hard", merge_threshold=0.99))
    assert len(np.unique(cls)) == 2 and cls[0] == cls[2]  # clusters 0 and 1 are one person
    rows, cls, w = pseudo_training_set(emb, labels, p, state, Recipe(weighting="soft", gamma=1.0))
    assert 5 not in rows  # soft weighting drops a face with no p-
    np.testing.assert_allclose(w[rows == 1], 0.5)
    with pytest.raises(ValueError):
        pseudo_training_set(emb, labels, p[:3], state)
