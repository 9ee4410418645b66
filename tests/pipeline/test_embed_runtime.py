"""The embedder's runtime: OpenVINO by default where it is installed, giving OpenCV's embeddings of the same
real crops (cosine >= 0.999), and each runtime can be asked for by name (issue 18, item 2)."""
import numpy as np
import pytest

from pipeline.recognition.embedders import OnnxEmbedder


@pytest.fixture(scope="module")
def crops():
    import cv2

    from tests.conftest import shared_path

    paths = sorted(shared_path("glint-sample").glob("*/*.png"))[:12]
    return np.stack([cv2.imread(str(p)) for p in paths])


def test_openvino_is_the_default_and_agrees_with_opencv(crops):
    pytest.importorskip("openvino")
    auto, opencv = OnnxEmbedder(), OnnxEmbedder(runtime="opencv")
    assert auto.runtime == "openvino" and opencv.runtime == "opencv"
    a, b = auto.embed(crops), opencv.embed(crops)
    assert a.shape == b.shape == (12, 128) and a.dtype == np.float32
    assert float((a * b).sum(1).min()) >= 0.999
    # two different faces stay different (the runtime is not returning one vector for everything)
    assert float(a[0] @ a[-1]) < 0.9


def test_runtime_by_name_and_environment(monkeypatch):
    with pytest.raises(ValueError, match="runtime must be one of"):
        OnnxEmbedder(runtime="tensorrt")
    monkeypatch.setenv("FACECURATE_EMBED_RUNTIME", "opencv")
    assert OnnxEmbedder().runtime == "opencv"
    assert OnnxEmbedder(batch_size=1, runtime="openvino").runtime == "opencv"  # one crop a pass: the file as it is
