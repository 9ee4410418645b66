"""SFace in PyTorch: the same embeddings as the ONNX model on real LFW faces, splitting, caching."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.recognition import sface_torch as st
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def model() -> st.SFaceNet:
    return st.load_sface_torch()


@pytest.fixture(scope="module")
def lfw_crops() -> np.ndarray:
    """30 real LFW faces (one image each of 30 identities, names sorted) detected and aligned."""
    from pipeline.recognition.faces import detect_and_align, read_image

    root = shared_path("lfw", "images_deepfunneled")
    dirs = sorted(d for d in root.iterdir() if d.is_dir())
    files = [sorted(d.glob("*.jpg"))[0] for d in dirs[::150][:30]]
    crops = [detect_and_align(read_image(f)).crop for f in files]
    crops = np.stack([c for c in crops if c is not None])
    assert len(crops) >= 28
    return crops


def test_blocked_dequantization_matches_onnx_reference() -> None:
    from onnx import helper, TensorProto
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, size=(6, 70)).astype(np.int8)
    scale = rng.uniform(0.001, 0.1, size=(6, 3)).astype(np.float32)
    zp = rng.integers(-20, 20, size=(6, 3)).astype(np.int8)
    node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1, block_size=32)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, t, None) for n, t in
                                            (("q", TensorProto.INT8), ("s", TensorProto.FLOAT), ("z", TensorProto.INT8))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    ref = ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))
    expected = ref.run(None, {"q": q, "s": scale, "z": zp})[0]
    np.testing.assert_allclose(st.dequantize_blocked(q, scale, zp, 1, 32), expected, rtol=0, atol=1e-7)
    # the last, partial block (entries 64..69) uses the third scale and zero point
    assert np.isclose(st.dequantize_blocked(q, scale, zp, 1, 32)[0, 69], (int(q[0, 69]) - int(zp[0, 2])) * scale[0, 2])


def test_graph_is_the_mapped_chain() -> None:
    from pipeline.recognition.faces import bundled_model

    ops = [layer[0] for layer in st.read_onnx_layers(bundled_model("recognizer"))]
    assert ops.count("Conv") == 27 and ops.count("PRelu") == 27 and ops.count("Gemm") == 1
    assert set(ops) == {"Sub", "Mul", "Conv", "BatchNormalization", "PRelu", "Dropout", "Flatten", "Gemm"}


def test_matches_onnx_embedder_on_real_lfw_faces(model: st.SFaceNet, lfw_crops: np.ndarray) -> None:
    from pipeline.recognition.embedders import OnnxEmbedder

    onnx_emb = OnnxEmbedder().embed(lfw_crops)
    torch_emb = st.SFaceTorchEmbedder(model, batch_size=16).embed(lfw_crops)
    assert torch_emb.shape == (len(lfw_crops), 128) and torch_emb.dtype == np.float32
    cos = (onnx_emb * torch_emb).sum(1)
    assert cos.min() >= 0.999, cos
    # and it is a face model, not a constant: different people are far apart
    other = (torch_emb @ torch_emb.T)[~np.eye(len(torch_emb), dtype=bool)]
    assert other.mean() < 0.3


def test_raw_and_normalised_input_agree(model: st.SFaceNet, lfw_crops: np.ndarray) -> None:
    norm = st.SFaceNet(raw_input=False)
    norm.load_state_dict(model.state_dict())
    norm.eval()
    with torch.no_grad():
        a = model(st.sface_input(lfw_crops[:4], raw=True))
        b = norm(st.sface_input(lfw_crops[:4], raw=False))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_split_freezes_trunk_and_head_reproduces_model(lfw_crops: np.ndarray) -> None:
    model = st.load_sface_torch()
    trunk, head = st.split_for_finetune(model, 2)
    assert len(head) == 2 and not any(p.requires_grad for p in trunk.parameters())
    assert all(p.requires_grad for p in head.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_train == sum(p.numel() for p in head.parameters())
    model.train()
    assert not trunk.training and not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    acts = st.cache_trunk_activations(trunk, lfw_crops[:5], batch_size=2)
    assert acts.shape == (5,) + st.trunk_output_shape(2) and acts.dtype == np.float16
    model.eval()
    with torch.no_grad():
        full = model(st.sface_input(lfw_crops[:5]))
        from_cache = model.forward_head(torch.from_numpy(acts).float())
    assert torch.nn.functional.cosine_similarity(full, from_cache).min() > 0.9999
    with pytest.raises(ValueError, match="trainable_blocks"):
        st.split_for_finetune(model, 0)


def test_cache_on_disk_and_flip(model: st.SFaceNet, lfw_crops: np.ndarray, tmp_path) -> None:
    trunk, _ = st.split_for_finetune(model, st.NUM_STAGES - 1)  # trunk = normalisation + stem
    acts = st.cache_trunk_activations(trunk, lfw_crops[:3], 2, out_path=tmp_path / "a.npy", flip=True)
    assert acts.shape == (3, 32, 112, 112)
    on_disk = np.load(tmp_path / "a.npy", mmap_mode="r")
    np.testing.assert_array_equal(on_disk, acts)
    plain = st.cache_trunk_activations(trunk, lfw_crops[:3], 2)
    # the stem's 3x3 conv is not mirror-symmetric, but the flipped cache is the stem of the flipped crop
    with torch.no_grad():
        expected = trunk(st.sface_input(lfw_crops[:3, :, ::-1])).numpy()
    np.testing.assert_allclose(acts.astype(np.float32), expected, atol=2e-2, rtol=1e-2)
    assert not np.allclose(plain, acts)
    model.set_trainable(None)


def test_bad_input_is_refused(model: st.SFaceNet) -> None:
    with pytest.raises(ValueError, match="112"):
        model(torch.zeros(1, 3, 96, 96))
    with pytest.raises(ValueError, match="uint8"):
        st.sface_input(np.zeros((1, 112, 112, 3), np.float32))
    with pytest.raises(ValueError, match="split_for_finetune"):
        st.cache_trunk_activations(torch.nn.Identity(), np.zeros((1, 112, 112, 3), np.uint8))
