"""Torch networks through OpenVINO (issue 15 item 4, issue 18 item 2): a fine-tuned SFace's trunk and whole
backbone give torch's outputs on real faces, a recognizer embeds through it on the CPU, and the switch off
(FACECURATE_EMBED_RUNTIME=torch) leaves torch running."""
import numpy as np
import pytest
import torch

from pipeline.recognition.models import Recognizer, build_model, crops_to_tensor
from pipeline.recognition.ov_infer import compile_module

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def crops():
    import cv2

    from tests.conftest import shared_path

    paths = sorted(shared_path("glint-sample").glob("*/*.png"))[:10]
    return np.stack([cv2.imread(str(p)) for p in paths])


@pytest.fixture(scope="module")
def recognizer():
    model = build_model({"backbone": "sface", "trainable_blocks": 2}, num_classes=3).eval()
    with torch.no_grad():  # a "fine-tuned" version: its last stage moved away from the parent's weights
        for p in model.backbone.stages[-1].parameters():
            p.add_(0.01 * torch.randn_like(p))
    return Recognizer(model=model, config={"backbone": "sface"}, class_names=np.array(["a", "b", "c"]))


def test_trunk_and_backbone_match_torch(crops, recognizer):
    net = recognizer.model.backbone
    x = crops_to_tensor(crops)
    for module in (net.stages[:net.split_index()], net):
        fast = compile_module(module, x[:2])
        assert fast is not None
        with torch.inference_mode():
            want = module(x).float().numpy()
        got = fast(x.numpy())
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))


def test_recognizer_embeds_through_openvino_like_torch(crops, recognizer, monkeypatch):
    import pipeline.recognition.ov_infer as ov_infer

    recognizer.embed_crops(crops)  # fewer faces than are worth compiling for: torch
    assert "ov" not in recognizer._fast
    monkeypatch.setattr(ov_infer, "WORTH_IT", 4)
    fast = recognizer.embed_crops(crops)
    assert recognizer._fast.get("ov") is not None
    slow = recognizer._run(crops_to_tensor(crops))[0]
    assert fast.shape == (10, 128) and fast.dtype == np.float32
    assert float((fast * slow).sum(1).min()) >= 0.9999
    assert float(fast[0] @ fast[-1]) < 0.9  # different people stay apart
    monkeypatch.setenv("FACECURATE_EMBED_RUNTIME", "torch")
    assert compile_module(recognizer.model.backbone, crops_to_tensor(crops[:2])) is None


def test_training_trunk_cache_runs_through_openvino(crops, monkeypatch):
    import pipeline.recognition.ov_infer as ov_infer
    from pipeline.recognition.sface_torch import cache_trunk_activations, load_sface_torch, split_for_finetune

    trunk, _ = split_for_finetune(load_sface_torch(raw_input=False), 2)
    monkeypatch.setenv("FACECURATE_EMBED_RUNTIME", "torch")
    want = cache_trunk_activations(trunk, crops, flip=True).astype(np.float32)
    monkeypatch.delenv("FACECURATE_EMBED_RUNTIME")
    monkeypatch.setattr(ov_infer, "WORTH_IT", 4)
    made = []
    real = ov_infer.compile_module
    monkeypatch.setattr(ov_infer, "compile_module", lambda m, x: made.append(real(m, x)) or made[-1])
    got = cache_trunk_activations(trunk, crops, flip=True).astype(np.float32)
    assert made and made[0] is not None
    np.testing.assert_allclose(got, want, atol=0.01 * float(np.abs(want).max()))


def test_class_means_run_through_openvino(crops, monkeypatch):
    """The classifier's starting weights (class means of the parent's embeddings) come from the OpenVINO-compiled
    backbone on the CPU, equal to torch's; the model is back in training mode with frozen BatchNorm after."""
    import pipeline.recognition.ov_infer as ov_infer
    from pipeline.recognition.loop import _init_class_means

    labels = np.arange(len(crops)) % 3

    def class_means() -> torch.Tensor:
        model = build_model({"backbone": "sface"}, num_classes=3).train()
        _init_class_means(model, crops, labels, 3, True, torch.device("cpu"), model.classifier)
        assert model.training and not model.backbone.stages.stem.bn.training  # SFace's BatchNorm stays frozen
        return model.classifier.weight.detach().clone()

    monkeypatch.setenv("FACECURATE_EMBED_RUNTIME", "torch")
    want = class_means()
    monkeypatch.delenv("FACECURATE_EMBED_RUNTIME")
    monkeypatch.setattr(ov_infer, "WORTH_IT", 4)
    made = []
    real = ov_infer.compile_module
    monkeypatch.setattr(ov_infer, "compile_module", lambda m, x: made.append(real(m, x)) or made[-1])
    got = class_means()
    assert len(made) == 1 and made[0] is not None
    torch.testing.assert_close(got, want, atol=1e-3, rtol=0)
