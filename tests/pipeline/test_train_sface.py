"""Fine-tuning the pretrained SFace with CosFace: frozen trunk, cached activations, checkpoints, embedder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.recognition.models import TorchEmbedder, build_model, class_logits, load_recognizer, make_embedder
from pipeline.recognition.sface_torch import NUM_STAGES, load_sface_torch
from pipeline.recognition.checkpoint import load_checkpoint
from pipeline.recognition.loop import cpu_has_bf16
from pipeline.recognition.training import TrainConfig, train_on_crops
from tests.pipeline.recognizer_data import att_crops


@pytest.fixture(scope="module")
def crops() -> tuple[np.ndarray, np.ndarray]:
    return att_crops(n_ids=4, per_id=4)


def _cfg(**kw) -> TrainConfig:
    base = dict(backbone="sface", trainable_blocks=2, epochs=2, batch_size=8, num_threads=1, log_every=1,
                lr=1e-3, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_frozen_trunk_stays_pretrained_and_head_learns(tmp_path, crops):
    x, y = crops
    cfg = _cfg(epochs=3, lr=1e-4, classifier_init="random", warmup_epochs=0)  # random classes: something to learn
    ck = load_checkpoint(train_on_crops(cfg, x, y, out_path=tmp_path / "s.pt"))
    assert ck["config"]["backbone"] == "sface" and ck["config"]["trainable_blocks"] == 2
    assert ck["metrics"]["trunk_cached"] is True and ck["input_dim"] is None
    pre = load_sface_torch(raw_input=False).state_dict()
    state = {k.removeprefix("backbone."): v for k, v in ck["model"].items() if k.startswith("backbone.")}
    assert state.keys() == pre.keys()
    changed = {k.split(".")[1] for k in state if not torch.equal(state[k], pre[k])}
    assert changed == {"conv_14", "embedding"}, changed  # only the 2 trainable stages moved
    # frozen BatchNorm: running statistics of the trained stages are SFace's too
    torch.testing.assert_close(state["stages.embedding.bn_out.running_mean"], pre["stages.embedding.bn_out.running_mean"])
    hist = ck["metrics"]["history"]
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"] and hist[-1]["accuracy"] > hist[0]["accuracy"]


def test_cached_trunk_trains_like_the_full_network(tmp_path, crops):
    """The activation cache is float16; training on it must follow the uncached run closely."""
    x, y = crops
    kw = dict(epochs=1, optimizer="sgd", lr=0.05, flip=True)
    a = load_checkpoint(train_on_crops(_cfg(cache_trunk=True, **kw), x, y, out_path=tmp_path / "a.pt"))
    b = load_checkpoint(train_on_crops(_cfg(cache_trunk=False, **kw), x, y, out_path=tmp_path / "b.pt"))
    assert a["metrics"]["trunk_cached"] and not b["metrics"]["trunk_cached"]
    la, lb = a["metrics"]["history"][0]["loss"], b["metrics"]["history"][0]["loss"]
    assert abs(la - lb) < 1e-2 * max(1.0, abs(lb)), (la, lb)
    w = "backbone.stages.embedding.fc.weight"
    w0 = load_sface_torch().state_dict()["stages.embedding.fc.weight"]
    da, db = a["model"][w] - w0, b["model"][w] - w0
    assert float(torch.nn.functional.cosine_similarity(da.flatten(), db.flatten(), dim=0)) > 0.99


def test_zero_weights_keep_sface_and_embedder_matches_onnx(tmp_path, crops):
    """Zero loss weights leave SFace as it was (all stages trainable, no trunk cache): the checkpoint's
    TorchEmbedder then gives the ONNX SFace embeddings, so checkpoint, loading and input form agree."""
    from pipeline.recognition.embedders import OnnxEmbedder

    x, y = crops[0][:8], crops[1][:8]  # two people, four faces each
    cfg = _cfg(trainable_blocks=None, epochs=1, optimizer="sgd", weight_decay=0.0, batch_size=8)
    path = train_on_crops(cfg, x, y, weights=np.zeros(len(x)), out_path=tmp_path / "z.pt")
    rec = load_recognizer(path)
    emb = make_embedder(checkpoint=path)
    assert isinstance(emb, TorchEmbedder) and emb.dim == 128 and emb.name == "cosface-sface"
    cos = (emb.embed(x) * OnnxEmbedder().embed(x)).sum(1)
    assert cos.min() > 0.999, cos
    # classifier initialised on the class means of SFace's embeddings: it already classifies
    assert (class_logits(rec, emb.embed(x)).argmax(1) == np.searchsorted(rec.class_names, y)).mean() == 1.0


def test_resume_refuses_other_trainable_blocks(tmp_path, crops):
    x, y = crops
    first = train_on_crops(_cfg(epochs=1), x, y, out_path=tmp_path / "a.pt")
    with pytest.raises(ValueError, match="trainable_blocks"):
        train_on_crops(_cfg(epochs=2, trainable_blocks=3), x, y, out_path=tmp_path / "b.pt", resume_from=first)


def test_cache_dir_keeps_activations_on_disk(tmp_path, crops):
    x, y = crops
    train_on_crops(_cfg(epochs=1, cache_dir=str(tmp_path / "c"), flip=False), x, y, out_path=tmp_path / "d.pt")
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert files == ["d.trunk2.npy"]
    assert np.load(tmp_path / "c" / files[0], mmap_mode="r").shape == (len(x), 1024, 7, 7)


def test_sface_config_validation():
    assert TrainConfig(backbone="sface").lr == 1e-4
    with pytest.raises(ValueError, match="trainable_blocks"):
        TrainConfig(backbone="sface", trainable_blocks=NUM_STAGES + 1)
    with pytest.raises(ValueError, match="sface"):
        TrainConfig(backbone="mobilefacenet", trainable_blocks=2)
    with pytest.raises(ValueError, match="128"):
        build_model({"backbone": "sface", "embedding_dim": 64}, 3, pretrained=False)
    with pytest.raises(ValueError, match="cache_trunk"):
        train_on_crops(_cfg(trainable_blocks=None, cache_trunk=True), np.zeros((4, 112, 112, 3), np.uint8),
                       np.array(["a", "a", "b", "b"]), out_path="/nonexistent/x.pt")


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bfloat16")
def test_cpu_bfloat16_autocast_trains_like_float32(tmp_path, crops):
    """Whole-network fine-tuning on a bf16 CPU runs under bfloat16 autocast (the checkpoint says so) and moves
    the weights as float32 training does; ``amp=False`` turns it off."""
    x, y = crops
    kw = dict(trainable_blocks=None, epochs=1, optimizer="sgd", lr=0.05, flip=False)
    a = load_checkpoint(train_on_crops(_cfg(**kw), x, y, out_path=tmp_path / "a.pt"))
    b = load_checkpoint(train_on_crops(_cfg(amp=False, **kw), x, y, out_path=tmp_path / "b.pt"))
    assert a["metrics"]["amp"] == "bfloat16" and b["metrics"]["amp"] is False
    la, lb = a["metrics"]["history"][0]["loss"], b["metrics"]["history"][0]["loss"]
    assert abs(la - lb) < 0.05 * max(1.0, abs(lb)), (la, lb)
    w0 = load_sface_torch().state_dict()
    for name in ("stages.stem.conv.weight", "stages.embedding.fc.weight"):  # the first stage and the last
        da, db = a["model"][f"backbone.{name}"] - w0[name], b["model"][f"backbone.{name}"] - w0[name]
        assert float(da.abs().max()) > 0  # it trained
        assert float(torch.nn.functional.cosine_similarity(da.flatten(), db.flatten(), dim=0)) > 0.9, name
