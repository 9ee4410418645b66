"""SFace through OpenCV in batches (issue 18): the int8 file's weights folded to floats once, crops then go
many a pass, with the same embeddings as the file run one crop a pass (cosine >= 0.999)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_path


def _crops(n: int = 40) -> np.ndarray:
    import cv2

    paths = sorted(shared_path("glint-sample").glob("*/*.png"))[:n]
    return np.stack([cv2.imread(str(p)) for p in paths])


def test_bundled_sface_runs_batched_with_the_per_crop_embeddings():
    from pipeline.recognition.embedders import OnnxEmbedder

    crops = _crops()
    batched, single = OnnxEmbedder(batch_size=16), OnnxEmbedder(batch_size=1)
    assert batched.batched and not single.batched
    a, b = batched.embed(crops), single.embed(crops)
    assert a.shape == b.shape == (len(crops), 128)
    assert float((a * b).sum(1).min()) >= 0.999
    # a batch that is not a multiple of the batch size, and a single crop, give the same rows
    assert float((batched.embed(crops[:5]) * b[:5]).sum(1).min()) >= 0.999
    assert float((batched.embed(crops[7]) * b[7]).sum()) >= 0.999


def test_a_model_with_nothing_to_fold_runs_one_crop_a_pass(tmp_path):
    from pipeline.recognition.embedders import float_model_bytes

    bad = tmp_path / "not-a-model.onnx"
    bad.write_bytes(b"not onnx")
    assert float_model_bytes(bad) is None
    with pytest.raises(Exception):
        from pipeline.recognition.embedders import OnnxEmbedder

        OnnxEmbedder(bad)
