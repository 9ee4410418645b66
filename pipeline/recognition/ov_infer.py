"""Inference of the project's torch networks through OpenVINO on the CPU.

A fine-tuned SFace runs about 4x cheaper per face through OpenVINO than through torch on this project's
CPUs (the frozen trunk of a retraining's LFW evaluation: 11 against 44 CPU ms a face), with the same
outputs to float32 rounding. ``compile_module`` converts an eval-mode module once (a few seconds), checks
it against torch on the example batch, and returns a callable from a float32 array to a float32 array;
None where OpenVINO is not installed, the module is not on the CPU, it cannot be converted, or its outputs
differ. Callers keep torch as the fallback. ``FACECURATE_EMBED_RUNTIME=opencv`` or ``torch`` turns it off.
"""
from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)
OFF = ("opencv", "torch")
#: Converting and compiling takes a few seconds: below this many faces in one call torch is as quick.
WORTH_IT = 256


def enabled() -> bool:
    return os.environ.get("FACECURATE_EMBED_RUNTIME", "auto") not in OFF


class OvModule:
    """A compiled model with one infer request per thread: (B, ...) float32 in, its first output out."""

    def __init__(self, compiled) -> None:
        self.compiled, self._local = compiled, threading.local()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        req = getattr(self._local, "req", None)
        if req is None:
            req = self._local.req = self.compiled.create_infer_request()
        out = req.infer({0: np.ascontiguousarray(x, np.float32)})[self.compiled.output(0)]
        return np.array(out, np.float32)


def compile_module(module, example) -> Callable[[np.ndarray], np.ndarray] | None:
    """``module`` (a torch ``nn.Module`` on the CPU, eval mode; one tensor in, one out) compiled by OpenVINO
    with a free batch dimension, or None (see the module's docstring). ``example``: a small input batch."""
    if not enabled():
        return None
    try:
        import openvino as ov
        import torch

        if any(p.device.type != "cpu" for p in module.parameters()):
            return None
        module = module.eval()
        with torch.inference_mode():
            want = module(example).float().numpy()
        with warnings.catch_warnings():  # tracing warns about shape checks in forward(): they hold here
            warnings.simplefilter("ignore")
            model = ov.convert_model(module, example_input=example)
        model.reshape({model.inputs[0]: ov.PartialShape([-1, *example.shape[1:]])})
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                          "PERFORMANCE_HINT": "LATENCY"})
        run = OvModule(compiled)
        got = run(example.numpy())
    except Exception as exc:  # noqa: BLE001 - no OpenVINO, or a module it cannot take: torch runs it
        log.info("OpenVINO does not run %s (%s: %s); torch does", type(module).__name__, type(exc).__name__, exc)
        return None
    scale = max(float(np.abs(want).max()), 1e-6)
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-3, atol=1e-3 * scale):
        log.warning("OpenVINO's outputs of %s differ from torch's; torch runs it", type(module).__name__)
        return None
    return run
