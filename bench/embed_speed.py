"""SFace embedding throughput on the CPU, runtimes side by side (issue 18, item 2).

    nice -n 10 .venv/bin/python bench/embed_speed.py --faces 256

The same aligned glint-sample crops go through
* today's path: ``pipeline.recognition.embedders.OnnxEmbedder`` (OpenCV DNN, the int8 block-quantised
  SFace file, one crop per forward pass);
* OpenCV DNN on a float copy of the model (its weights dequantised once, here) in batches;
* onnxruntime on that float copy, in batches, 2 intra-op threads;
* the project's torch port of SFace (``SFaceTorchEmbedder``), in batches, 2 threads;
each timed over ``--rounds`` interleaved rounds (best round reported: the machine is shared). Agreement:
the smallest cosine between a runtime's embedding and today's for the same crop (must be >= 0.999).
Writes bench/results/embed_speed.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import harness  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402


def float_model_bytes(path: Path) -> bytes:
    """The model with every weight DequantizeLinear / Reshape on constants folded into float initializers
    and a free batch dimension: runtimes then neither dequantise per call nor see stale graph inputs."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    m = onnx.load(str(path))
    g = m.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    folded = []
    for n in g.node:
        if n.op_type in ("DequantizeLinear", "Reshape") and all(i in consts for i in n.input if i):
            sub = helper.make_model(helper.make_graph(
                [n], "fold", [], [helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, None)],
                [numpy_helper.from_array(consts[i], i) for i in n.input if i]), opset_imports=m.opset_import)
            consts[n.output[0]] = ReferenceEvaluator(sub).run(None, {})[0]
            folded.append(n)
    rest = [n for n in g.node if n not in folded]
    used = {i for n in rest for i in n.input}
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items() if k in used]
    del g.node[:]
    g.node.extend(rest)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("data", onnx.TensorProto.FLOAT, ["N", 3, 112, 112])])
    g.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return m.SerializeToString()


def runners(model: Path, batch: int) -> dict:
    import cv2
    import onnxruntime as ort

    from pipeline.recognition.embedders import OnnxEmbedder

    today = OnnxEmbedder()
    data = float_model_bytes(model)
    net = cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])

    def cv_float(crops):
        out = []
        for a in range(0, len(crops), batch):
            net.setInput(cv2.dnn.blobFromImages(list(crops[a:a + batch]), 1.0, (112, 112), (0, 0, 0), True, False))
            out.append(net.forward().reshape(len(crops[a:a + batch]), -1))
        return np.concatenate(out)

    def onnxrt(crops):
        x = np.ascontiguousarray(crops[:, :, :, ::-1].transpose(0, 3, 1, 2), np.float32)
        return np.concatenate([sess.run(None, {"data": x[a:a + batch]})[0] for a in range(0, len(x), batch)])

    import torch

    from pipeline.recognition.sface_torch import SFaceTorchEmbedder

    torch.set_num_threads(2)
    torch_sface = SFaceTorchEmbedder(batch_size=batch)
    return {"OpenCV DNN, int8 file, 1 crop per pass (today)": today.embed,
            f"torch SFaceNet (pipeline.recognition.sface_torch), batch {batch}, 2 threads": torch_sface.embed,
            f"OpenCV DNN, float copy, batch {batch}": cv_float,
            f"onnxruntime, float copy, batch {batch}, 2 threads": onnxrt}


def main() -> None:
    import cv2

    from pipeline.recognition.faces import bundled_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cv2.setNumThreads(2)
    paths = sorted((SHARED_DATA / "glint-sample").glob("*/*.png"))[:args.faces]
    crops = np.stack([cv2.imread(str(p)) for p in paths])
    run = runners(bundled_model("recognizer"), args.batch)
    ref = None
    res: dict = {"faces": len(crops), "batch": args.batch, "rounds": args.rounds, "runtimes": {}}
    times: dict[str, list[float]] = {k: [] for k in run}
    cpu: dict[str, list[float]] = {k: [] for k in run}
    outs = {}
    for name, fn in run.items():  # warm-up: first-call allocations and graph set-up are not throughput
        fn(crops[:8])
    for _ in range(args.rounds):
        for name, fn in run.items():
            c0 = os.times()
            with harness.timed() as t:
                e = fn(crops)
            c1 = os.times()
            times[name].append(t.seconds)
            cpu[name].append((c1.user - c0.user) + (c1.system - c0.system))
            outs[name] = e / np.linalg.norm(e, axis=1, keepdims=True)
    ref = outs[next(iter(run))]
    for name in run:
        best = min(times[name])
        res["runtimes"][name] = {"faces_per_s_best": round(len(crops) / best, 1),
                                 "faces_per_s_median": round(len(crops) / float(np.median(times[name])), 1),
                                 # CPU seconds per face (all threads): less bent by other load than the clock
                                 "cpu_ms_per_face": round(1000 * float(np.median(cpu[name])) / len(crops), 2),
                                 "min_cosine_to_today": round(float((outs[name] * ref).sum(1).min()), 6)}
        print(name, res["runtimes"][name], flush=True)
    lines = ["# SFace embedding throughput (CPU)", "",
             f"{len(crops)} aligned glint-sample crops, {args.rounds} interleaved rounds; faces/s of the best and "
             "the median round; agreement = smallest cosine to today's embedding of the same crop.", "",
             "| runtime | faces/s (best) | faces/s (median) | CPU ms per face (median) | min cosine to today |",
             "|---|---|---|---|---|"]
    for name, r in res["runtimes"].items():
        lines.append(f"| {name} | {r['faces_per_s_best']} | {r['faces_per_s_median']} | {r['cpu_ms_per_face']} | "
                     f"{r['min_cosine_to_today']} |")
    lines += ["", "The machine is shared (load average in the header): compare rows, not absolute rates."]
    harness.write_results("embed_speed", res, "\n".join(lines))


if __name__ == "__main__":
    main()
