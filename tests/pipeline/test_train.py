"""The training loop: seeds, resume, checkpoints, progress, per-sample weights, margin, DDP (gloo)."""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from pipeline.features import FeatureSet
from pipeline.recognition.models import class_logits, load_recognizer
from pipeline.recognition.checkpoint import load_checkpoint
from pipeline.recognition.training import TrainConfig, train
from tests.pipeline.recognizer_data import att_features, shared_path


def _small(n_ids: int = 10) -> FeatureSet:
    feats = att_features()
    keep = np.flatnonzero(np.isin(feats.labels, [f"s{i}" for i in range(1, n_ids + 1)]))
    return feats.subset(keep)


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=16, num_threads=1, log_every=1, lr=1e-3)
    base.update(kw)
    return TrainConfig(**base)


def _state(path):
    return load_checkpoint(path)["model"]


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    data = _small()
    a = train(_cfg(), data, out_path=tmp_path / "a.pt")
    b = train(_cfg(), data, out_path=tmp_path / "b.pt")
    c = train(_cfg(seed=1), data, out_path=tmp_path / "c.pt")
    _assert_same_state(_state(a), _state(b))
    assert not torch.equal(_state(a)["backbone.body.0.weight"], _state(c)["backbone.body.0.weight"])


def test_resume_continues_exactly(tmp_path):
    data = _small()
    full = train(_cfg(epochs=3), data, out_path=tmp_path / "full.pt")
    first = train(_cfg(epochs=1), data, out_path=tmp_path / "part.pt")
    assert load_checkpoint(first)["epoch"] == 1
    resumed = train(_cfg(epochs=3), data, out_path=tmp_path / "resumed.pt", resume_from=first)
    ck = load_checkpoint(resumed)
    assert ck["epoch"] == 3 and len(ck["metrics"]["history"]) == 3
    _assert_same_state(_state(full), ck["model"])


def test_resume_refuses_other_classes(tmp_path):
    ck = train(_cfg(epochs=1), _small(10), out_path=tmp_path / "a.pt")
    with pytest.raises(ValueError, match="classes"):
        train(_cfg(epochs=2), _small(8), out_path=tmp_path / "b.pt", resume_from=ck)


def test_checkpoint_holds_config_classes_metrics_and_progress_is_reported(tmp_path):
    data = _small()
    events = []
    path = train(_cfg(margin=0.3, scale=32), data, out_path=tmp_path / "h.pt",
                 progress=lambda cur, tot, **info: events.append((cur, tot, info)))
    ck = load_checkpoint(path)
    assert ck["config"]["margin"] == 0.3 and ck["config"]["scale"] == 32 and ck["config"]["backbone"] == "mlp"
    assert ck["class_names"] == sorted(set(data.labels.tolist()))
    assert ck["input_dim"] == 128
    m = ck["metrics"]
    assert m["num_samples"] == len(data) and m["num_classes"] == 10 and len(m["history"]) == 2
    assert np.isfinite(m["final_loss"]) and 0 <= m["final_accuracy"] <= 1
    steps = [e for e in events if e[2]["phase"] == "train"]
    epochs = [e for e in events if e[2]["phase"] == "epoch"]
    assert steps and len(epochs) == 2
    for key in ("epoch", "step", "loss", "rate"):
        assert key in steps[0][2]
    assert events[-1][0] == events[-1][1]  # finished: current == total


def test_zero_weights_leave_the_model_untouched(tmp_path):
    """Per-sample weights reach the loss: all-zero weights give zero gradients."""
    data = _small()
    cfg = _cfg(optimizer="sgd", weight_decay=0.0, classifier_init="random")
    path = train(cfg, data, weights=np.zeros(len(data)), out_path=tmp_path / "z.pt")
    torch.manual_seed(cfg.seed)
    from pipeline.recognition.models import build_model

    init = build_model(vars(cfg), 10, 128).state_dict()
    trained = _state(path)
    for k, v in init.items():
        if "running" in k or "num_batches" in k:
            continue  # BatchNorm statistics move without gradients
        torch.testing.assert_close(trained[k], v, msg=k)
    with pytest.raises(ValueError):
        train(cfg, data, weights=np.ones(3), out_path=tmp_path / "bad.pt")


def test_margin_widens_the_gap_to_the_nearest_other_class(tmp_path):
    """Trained with the CosFace margin, the target cosine beats the best other class by more
    than without it (a margin applied to the wrong logit would shrink this gap)."""
    data = att_features()
    gaps = {}
    for m in (0.0, 0.35):
        rec = load_recognizer(train(_cfg(epochs=6, batch_size=64, margin=m, classifier_init="random", log_every=100),
                                    data, out_path=tmp_path / f"m{m}.pt"))
        logits = class_logits(rec, data.embeddings)
        ids = np.searchsorted(rec.class_names, data.labels)
        target = logits[np.arange(len(ids)), ids]
        logits[np.arange(len(ids)), ids] = -np.inf
        gaps[m] = float(np.median(target - logits.max(1)))
    print(gaps)
    assert gaps[0.35] > gaps[0.0] + 0.05, gaps


def test_head_classifies_held_out_att_faces(tmp_path):
    """Train on 6 images per person, classify the other 4: real faces, real generalisation."""
    data = att_features()
    k = np.array([int(p.split("/")[-1].split(".")[0]) for p in data.paths])
    rec = load_recognizer(train(_cfg(epochs=5, batch_size=32, log_every=100), data.subset(np.flatnonzero(k <= 6)),
                                out_path=tmp_path / "h.pt"))
    test = data.subset(np.flatnonzero(k > 6))
    arg = class_logits(rec, test.embeddings).argmax(1)
    assert (rec.class_names[arg] == test.labels).mean() > 0.9


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gloo_world_size_one_matches_single_process(tmp_path, monkeypatch):
    data = _small()
    single = train(_cfg(), data, out_path=tmp_path / "single.pt")
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                       "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    ddp = train(_cfg(distributed=True, device="cpu"), data, out_path=tmp_path / "ddp.pt")
    assert not torch.distributed.is_initialized()  # the group it made is torn down
    assert load_checkpoint(ddp)["metrics"]["world_size"] == 1
    _assert_same_state(_state(single), _state(ddp))


def test_image_backbone_trains_from_image_paths(tmp_path):
    """train() with an image backbone reads the FeatureSet's paths (here att PGMs, detected and aligned)."""
    root = shared_path("att_faces")
    paths = [str(root / f"s{s}" / f"{k}.pgm") for s in (1, 2, 3) for k in (1, 2, 3, 4)]
    labels = [p.split("/")[-2] for p in paths]
    dummy = np.tile(np.eye(1, 1, dtype=np.float32), (len(paths), 1))
    cfg = TrainConfig(backbone="mobilefacenet", width=0.25, embedding_dim=32, epochs=1, batch_size=6,
                      optimizer="sgd", lr=0.01, num_threads=1)
    ck = load_checkpoint(train(cfg, FeatureSet(dummy, paths, labels), out_path=tmp_path / "m.pt"))
    assert ck["class_names"] == ["s1", "s2", "s3"]
    assert ck["metrics"]["num_samples"] + ck["metrics"].get("skipped_images", 0) == 12
    assert ck["input_dim"] is None


def test_config_validation():
    with pytest.raises(ValueError):
        TrainConfig(backbone="vgg")
    with pytest.raises(ValueError):
        TrainConfig(margin=1.2)
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    assert TrainConfig.from_dict({"backbone": "mlp", "unknown_key": 1}).backbone == "mlp"
    assert TrainConfig().lr == 1e-4 and TrainConfig(backbone="mobilefacenet").lr == 1e-3
