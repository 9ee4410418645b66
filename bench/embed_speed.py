"""SFace embedding throughput on the CPU, runtimes side by side (issue 18, item 2).

    nice -n 10 .venv/bin/python bench/embed_speed.py --faces 256

The same aligned glint-sample crops go through
* the int8 block-quantised SFace file as shipped, one crop per forward pass (OpenCV DNN; the reference
  every other row is compared with);
* the file's weights folded to floats once (``pipeline.recognition.embedders.float_model_bytes``) and run
  in batches by OpenCV DNN;
* the product's path, ``OnnxEmbedder``: that fold in batches through OpenVINO (f32) where it is installed;
* onnxruntime on that same float fold, in batches, 2 intra-op threads;
* the project's torch port of SFace (``SFaceTorchEmbedder``), in batches, 2 threads;
each timed over ``--rounds`` interleaved rounds (best round reported: the machine is shared). Agreement:
the smallest cosine between a runtime's embedding and the shipped file's for the same crop (must be >= 0.999).
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


def onnxruntime_runner(data: bytes, batch: int):
    """The folded model run by onnxruntime (2 intra-op threads), or None where onnxruntime is not installed
    (it is not a product dependency: ``pip install onnxruntime`` into the venv to add its row)."""
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime is not installed: its row is left out", flush=True)
        return None
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    feed = sess.get_inputs()[0].name

    def run(crops):
        x = np.ascontiguousarray(crops[:, :, :, ::-1].transpose(0, 3, 1, 2), np.float32)
        return np.concatenate([sess.run(None, {feed: x[a:a + batch]})[0] for a in range(0, len(x), batch)])
    return run


def runners(model: Path, batch: int) -> dict:
    from pipeline.recognition.embedders import OnnxEmbedder, float_model_bytes

    single = OnnxEmbedder(batch_size=1)  # the int8 file as it is, one crop a pass (the product before batching)
    product = OnnxEmbedder(batch_size=batch)  # the product's path: the float fold, in batches, OpenVINO
    opencv = OnnxEmbedder(batch_size=batch, runtime="opencv")  # the same through OpenCV DNN
    if not product.batched:
        raise SystemExit("the product's embedder did not take the batched path on this model")
    onnxrt = onnxruntime_runner(float_model_bytes(model), batch)  # the product's fold, run by onnxruntime

    import torch

    from pipeline.recognition.sface_torch import SFaceTorchEmbedder

    torch.set_num_threads(2)
    torch_sface = SFaceTorchEmbedder(batch_size=batch)
    return {"OpenCV DNN, int8 file, 1 crop per pass (reference: the file as shipped)": single.embed,
            f"OpenCV DNN, float fold, batch {batch}": opencv.embed,
            f"the product: OnnxEmbedder, float fold, batch {batch}, runtime {product.runtime}": product.embed,
            f"torch SFaceNet (pipeline.recognition.sface_torch), batch {batch}, 2 threads": torch_sface.embed,
            **({f"onnxruntime, float fold, batch {batch}, 2 threads": onnxrt} if onnxrt else {})}


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
                                 "min_cosine_to_shipped": round(float((outs[name] * ref).sum(1).min()), 6)}
        print(name, res["runtimes"][name], flush=True)
    lines = ["# SFace embedding throughput (CPU)", "",
             f"{len(crops)} aligned glint-sample crops, {args.rounds} interleaved rounds; faces/s of the best and "
             "the median round; agreement = smallest cosine to the shipped file's embedding of the same crop (first row).", "",
             "| runtime | faces/s (best) | faces/s (median) | CPU ms per face (median) | min cosine to the shipped file |",
             "|---|---|---|---|---|"]
    for name, r in res["runtimes"].items():
        lines.append(f"| {name} | {r['faces_per_s_best']} | {r['faces_per_s_median']} | {r['cpu_ms_per_face']} | "
                     f"{r['min_cosine_to_shipped']} |")
    lines += ["", "The machine is shared (load average in the header): compare rows, not absolute rates."]
    harness.write_results("embed_speed", res, "\n".join(lines))


if __name__ == "__main__":
    main()
