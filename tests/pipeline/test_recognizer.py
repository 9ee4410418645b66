"""Backbones, the cosine classifier, loading a recognizer, class logits and the Embedder adapters."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.features import l2_normalize
from pipeline.recognition.models import (
    CosineClassifier,
    FeatureHeadEmbedder,
    MLPHead,
    MobileFaceNet,
    TorchEmbedder,
    build_model,
    class_logits,
    crops_to_tensor,
    load_recognizer,
    max_logit_and_argmax,
)
from pipeline.recognition.training import TrainConfig, train, train_on_crops
from tests.pipeline.recognizer_data import att_crops, att_features


@pytest.fixture(scope="module")
def att_head(tmp_path_factory):
    feats = att_features()
    path = train(TrainConfig(epochs=3, batch_size=64, num_threads=1), feats,
                 out_path=tmp_path_factory.mktemp("rec") / "head.pt")
    return feats, load_recognizer(path)


def test_residual_head_starts_as_identity():
    torch.manual_seed(0)
    head = MLPHead(128, 128).eval()
    x = torch.randn(5, 128)
    torch.testing.assert_close(head(x), x)
    assert not MLPHead(128, 64).residual
    with pytest.raises(ValueError):
        head(torch.randn(5, 64))


def test_cosine_classifier_returns_cosines():
    clf = CosineClassifier(8, 3)
    emb = torch.randn(4, 8) * 10  # unnormalised on purpose
    out = clf(emb)
    w = clf.weight.detach()
    expected = (emb / emb.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(out.detach(), expected)
    assert out.abs().max() <= 1 + 1e-6


def test_mobilefacenet_shapes():
    net = MobileFaceNet(64, width=0.25).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 112, 112)).shape == (2, 64)
    with pytest.raises(ValueError):
        net(torch.zeros(2, 3, 96, 96))
    n_params = sum(p.numel() for p in MobileFaceNet(128, 1.0).parameters())
    assert 0.8e6 < n_params < 1.3e6  # the published MobileFaceNet has ~1 M parameters


def test_build_model_rejects_unknown_backbone_and_missing_input_dim():
    with pytest.raises(ValueError):
        build_model({"backbone": "resnet9000"}, 3)
    with pytest.raises(ValueError):
        build_model({"backbone": "mlp"}, 3)


def test_crops_to_tensor_is_rgb_and_centred():
    crop = np.zeros((1, 112, 112, 3), np.uint8)
    crop[..., 0] = 255  # blue in BGR
    x = crops_to_tensor(crop)
    assert x.shape == (1, 3, 112, 112)
    assert torch.allclose(x[0, 2], torch.full((112, 112), 127.5 / 128))  # blue is the last RGB channel
    assert torch.allclose(x[0, 0], torch.full((112, 112), -127.5 / 128))
    with pytest.raises(ValueError):
        crops_to_tensor(np.zeros((1, 112, 112, 3), np.float32))


def test_class_logits_are_cosines_that_identify_training_faces(att_head):
    feats, rec = att_head
    logits = class_logits(rec, feats.embeddings)
    assert logits.shape == (len(feats), 40) and logits.dtype == np.float32
    assert logits.min() >= -1 - 1e-5 and logits.max() <= 1 + 1e-5
    mx, arg = max_logit_and_argmax(logits)
    assert mx.shape == (len(feats),) and arg.dtype == np.int64
    assert (rec.class_names[arg] == feats.labels).mean() > 0.95
    # the same logits from the head's own embeddings
    emb = rec.embed_features(feats.embeddings)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(class_logits(rec, emb, already_embedded=True), logits, atol=1e-5)


def test_class_logits_rejects_wrong_feature_size(att_head):
    _, rec = att_head
    with pytest.raises(ValueError):
        class_logits(rec, l2_normalize(np.random.default_rng(0).normal(size=(3, 64))))


def test_max_logit_and_argmax_matches_numpy():
    logits = np.random.default_rng(1).uniform(-1, 1, (20, 7)).astype(np.float32)
    mx, arg = max_logit_and_argmax(logits)
    np.testing.assert_array_equal(arg, logits.argmax(1))
    np.testing.assert_array_equal(mx, logits.max(1))
    with pytest.raises(ValueError):
        max_logit_and_argmax(np.zeros(5))


class _FakeBase:
    name, dim = "fake", 128

    def __init__(self, feats):
        self.feats = feats

    def embed(self, crops):
        return self.feats[: len(crops)]


def test_feature_head_embedder_runs_base_then_head(att_head):
    feats, rec = att_head
    emb = FeatureHeadEmbedder(_FakeBase(feats.embeddings), rec)
    crops = np.zeros((4, 112, 112, 3), np.uint8)
    np.testing.assert_allclose(emb.embed(crops), rec.embed_features(feats.embeddings[:4]), atol=1e-6)
    assert emb.dim == rec.dim
    with pytest.raises(ValueError):
        TorchEmbedder(rec)  # an MLP head is not an image backbone


def test_torch_embedder_over_a_tiny_mobilefacenet(tmp_path):
    crops, labels = att_crops(n_ids=4, per_id=4)
    cfg = TrainConfig(backbone="mobilefacenet", width=0.25, embedding_dim=32, epochs=1, batch_size=8,
                      optimizer="sgd", lr=0.01, num_threads=1)
    rec = load_recognizer(train_on_crops(cfg, crops, labels, out_path=tmp_path / "mfn.pt"))
    emb = TorchEmbedder(rec)
    out = emb.embed(crops[:5])
    assert out.shape == (5, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    assert class_logits(rec, out).shape == (5, 4)
    with pytest.raises(ValueError):
        rec.embed_features(out)


def test_load_recognizer_rejects_other_files(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(3)}, bad)
    with pytest.raises(ValueError):
        load_recognizer(bad)
    with pytest.raises(FileNotFoundError):
        load_recognizer(tmp_path / "missing.pt")


def test_make_embedder_follows_the_settings(att_head, monkeypatch, tmp_path):
    from pipeline.recognition.models import make_embedder

    feats, rec = att_head
    monkeypatch.delenv("FACECURATE_EMBEDDER_ONNX", raising=False)
    assert make_embedder().name == "sface"
    assert isinstance(make_embedder(checkpoint=rec.path), FeatureHeadEmbedder)
    monkeypatch.setenv("FACECURATE_EMBEDDER_ONNX", str(tmp_path / "nope.onnx"))
    with pytest.raises(FileNotFoundError):
        make_embedder()
