"""Fine-tune pretrained SFace's last stages with CosFace on half of LFW; test on the other half.

    PYTHONPATH=. .venv/bin/python bench/finetune_sface.py                 # CPU, small default
    PYTHONPATH=. .venv/bin/python bench/finetune_sface.py --device cuda   # all identities, LFW pairs

Split: LFW identities with >= ``--min-images`` images (default 4: 610 identities, 6,733 images),
shuffled by ``--seed``; the first half trains, the second half tests. ``--max-train-ids`` /
``--max-test-ids`` take a seeded subset of each half (defaults: 40 / 40 on CPU, all on CUDA).
Faces are detected and aligned with ``pipeline.recognition.faces`` (in threads) and kept in a crop cache
(``$FACECURATE_CACHE/crops/lfw_crops.npz``) so later runs skip detection.

For each ``--trainable-blocks`` value (comma-separated; 15 = the whole network) the script
fine-tunes SFace with ``pipeline.recognition.training.train_on_crops`` (CosFace, class-mean classifier start,
frozen BatchNorm; the frozen trunk's activations are cached on CPU) and scores the test half with
``pipeline.evaluation.verification`` (TAR at FAR over all pairs, rank-1/5 identification) against the pretrained
SFace. With ``--pairs`` (default on CUDA) it also runs the LFW pairs protocol on all 6,000 pairs and
on the pairs with no training-half identity. Writes ``bench/results/finetune_sface_<device>.json``
with timings (faces/s) and the machine's facts.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.evaluation.verification import evaluate_features, read_lfw_pairs, summary  # noqa: E402
from pipeline.recognition.faces import FaceDetector, detect_and_align, read_image  # noqa: E402
from pipeline.features import FeatureSet, atomic_save_npz  # noqa: E402
from pipeline.recognition.models import TorchEmbedder, load_recognizer  # noqa: E402
from pipeline.recognition.sface_torch import NUM_STAGES, SFaceTorchEmbedder, load_sface_torch  # noqa: E402
from pipeline.recognition.checkpoint import load_checkpoint
from pipeline.recognition.training import TrainConfig, train_on_crops  # noqa: E402

DATA = Path(os.environ.get("FACECURATE_SHARED_DATA", ROOT.parent / "shared" / "data"))
CACHE = Path(os.environ.get("FACECURATE_CACHE", ROOT / ".cache"))
LFW = DATA / "lfw" / "images_deepfunneled"
PAIRS = DATA / "lfw" / "pairs.txt"
OUT = ROOT / "bench" / "results"


# --------------------------------------------------------------------------- data
def split_identities(min_images: int, seed: int, max_train: int, max_test: int) -> tuple[dict, dict, dict]:
    """{name: [relative image paths]} for the train and test halves, and split facts."""
    people = {d.name: sorted(f"{d.name}/{f.name}" for f in d.glob("*.jpg"))
              for d in sorted(LFW.iterdir()) if d.is_dir()}
    eligible = sorted(n for n, files in people.items() if len(files) >= min_images)
    order = np.random.default_rng(seed).permutation(len(eligible))
    half = len(eligible) // 2
    train_names = [eligible[i] for i in order[:half]][: max_train or None]
    test_names = [eligible[i] for i in order[half:]][: max_test or None]
    train, test = {n: people[n] for n in train_names}, {n: people[n] for n in test_names}
    info = {"min_images": min_images, "seed": seed, "eligible_identities": len(eligible),
            "train_identities": len(train), "train_images": sum(map(len, train.values())),
            "test_identities": len(test), "test_images": sum(map(len, test.values()))}
    return train, test, info


def crops_for(relpaths: list[str], workers: int) -> tuple[dict[str, np.ndarray], dict]:
    """Aligned crops of LFW images by relative path, through the on-disk crop cache."""
    cache_file = CACHE / "crops" / "lfw_crops.npz"
    have: dict[str, np.ndarray] = {}
    failed: set[str] = set()
    if cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            have = dict(zip(z["paths"].tolist(), z["crops"]))
            failed = set(z["failed"].tolist())
    todo = [p for p in dict.fromkeys(relpaths) if p not in have and p not in failed]
    t0 = time.perf_counter()
    if todo:
        det = FaceDetector()  # one OpenCV instance per thread inside

        def one(rel: str) -> np.ndarray | None:
            return detect_and_align(read_image(LFW / rel), det).crop

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for rel, crop in zip(todo, pool.map(one, todo, chunksize=16)):
                if crop is None:
                    failed.add(rel)
                else:
                    have[rel] = crop
        keys = sorted(have)
        atomic_save_npz(cache_file, paths=np.asarray(keys, dtype=str), crops=np.stack([have[k] for k in keys]),
                        failed=np.asarray(sorted(failed), dtype=str))
    secs = time.perf_counter() - t0
    info = {"detected_now": len(todo), "detect_seconds": round(secs, 2), "workers": workers,
            "detect_align_images_per_s": round(len(todo) / secs, 1) if todo else None,
            "no_face": sorted(set(relpaths) & failed)}
    return {p: have[p] for p in relpaths if p in have}, info


def stack(people: dict[str, list[str]], crops: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    paths = [p for files in people.values() for p in files if p in crops]
    return np.stack([crops[p] for p in paths]), np.asarray([p.split("/")[0] for p in paths]), np.asarray(paths)


def embed_timed(embedder, crops: np.ndarray) -> tuple[np.ndarray, float]:
    embedder.embed(crops[:8])  # warm-up (CUDA kernels, allocator)
    t0 = time.perf_counter()
    emb = embedder.embed(crops)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return emb, round(len(crops) / (time.perf_counter() - t0), 1)


# --------------------------------------------------------------------------- machine
def machine(device: str) -> dict:
    facts = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
             "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
             "load_average_1min": round(os.getloadavg()[0], 2), "device": device}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        facts.update(cuda_device=torch.cuda.get_device_name(torch.device(device)), cuda_version=torch.version.cuda,
                     cuda_capability=f"{props.major}.{props.minor}", cuda_memory_gib=round(props.total_memory / 2**30, 1))
    return facts


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--trainable-blocks", default="2", help=f"comma-separated; each 1..{NUM_STAGES} ({NUM_STAGES}: all)")
    ap.add_argument("--epochs", type=int, default=None, help="default: 2 on CPU, 10 on CUDA")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=None, help="default: 32 on CPU, 128 on CUDA")
    ap.add_argument("--min-images", type=int, default=4)
    ap.add_argument("--max-train-ids", type=int, default=None, help="0: all (default: 40 on CPU, all on CUDA)")
    ap.add_argument("--max-test-ids", type=int, default=None, help="0: all (default: 40 on CPU, all on CUDA)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pairs", action=argparse.BooleanOptionalAction, default=None,
                    help="LFW pairs protocol too (default: on for CUDA; on CPU it embeds ~7,700 more images)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on CPU, as is on CUDA)")
    ap.add_argument("--workers", type=int, default=None, help="detection threads (default: CPU count, at most 16)")
    ap.add_argument("--out", default=None, help="result JSON (default bench/results/finetune_sface_<device>.json)")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda but torch sees no CUDA device")
    epochs = args.epochs or (10 if cuda else 2)
    batch = args.batch_size or (128 if cuda else 32)
    max_train = (0 if cuda else 40) if args.max_train_ids is None else args.max_train_ids
    max_test = (0 if cuda else 40) if args.max_test_ids is None else args.max_test_ids
    pairs = cuda if args.pairs is None else args.pairs
    blocks = [int(b) for b in args.trainable_blocks.split(",")]
    if args.threads or not cuda:
        torch.set_num_threads(args.threads or 1)
    workers = args.workers or min(16, os.cpu_count() or 1)
    t_all = time.perf_counter()
    res: dict = {"command": " ".join(sys.argv), "machine": machine(args.device),
                 "settings": {"epochs": epochs, "lr": args.lr, "batch_size": batch, "trainable_blocks": blocks,
                              "pairs": pairs, "loss": "CosFace s=64 m=0.35", "optimizer": "adamw",
                              "freeze_bn": True, "classifier_init": "class_means"}}
    print("machine", res["machine"], flush=True)

    train_people, test_people, res["split"] = split_identities(args.min_images, args.seed, max_train, max_test)
    print("split", res["split"], flush=True)
    wanted = [p for files in (*train_people.values(), *test_people.values()) for p in files]
    pair_list = read_lfw_pairs(PAIRS) if pairs else []
    if pairs:
        wanted += [p for a, b, _, _ in pair_list for p in (a, b)]
    crops, res["detection"] = crops_for(wanted, workers)
    print("detection", {k: v for k, v in res["detection"].items() if k != "no_face"}, flush=True)
    x_train, y_train, _ = stack(train_people, crops)
    x_test, y_test, p_test = stack(test_people, crops)
    pair_paths = np.asarray(sorted({p for a, b, _, _ in pair_list for p in (a, b)} & set(crops)))
    x_pairs = np.stack([crops[p] for p in pair_paths]) if pairs else None

    def score(embedder, name: str) -> dict:
        emb, fps = embed_timed(embedder, x_test)
        rep = evaluate_features(FeatureSet(emb, p_test, y_test), name=name)
        out = {"test": summary(rep), "embed_faces_per_s": fps}
        if pairs:
            pe, _ = embed_timed(embedder, x_pairs)
            feats = FeatureSet(pe, pair_paths, np.asarray([p.split("/")[0] for p in pair_paths]))
            rep_all = evaluate_features(feats, pairs_path=PAIRS, allow_missing=True, name=name)["lfw"]
            unseen = feats.subset(np.flatnonzero(~np.isin(feats.labels, list(train_people))))
            rep_unseen = evaluate_features(unseen, pairs_path=PAIRS, allow_missing=True, name=name)["lfw"]
            out["lfw_pairs"] = {k: rep_all[k] for k in ("mean", "std", "num_pairs", "num_missing")}
            out["lfw_pairs_without_train_identities"] = {k: rep_unseen[k] for k in ("mean", "std", "num_pairs")}
        print(name, out, flush=True)
        return out

    res["pretrained_sface"] = score(SFaceTorchEmbedder(load_sface_torch(), batch_size=128, device=args.device),
                                    "sface (pretrained, torch)")
    res["finetuned"] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in blocks:
            cfg = TrainConfig(backbone="sface", trainable_blocks=None if k >= NUM_STAGES else k, epochs=epochs,
                              batch_size=batch, lr=args.lr, seed=args.seed, device=args.device,
                              num_threads=0, log_every=10**9)
            t0 = time.perf_counter()
            path = train_on_crops(cfg, x_train, y_train, out_path=Path(tmp) / f"sface_{k}.pt")
            if cuda:
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            m = load_checkpoint(path)["metrics"]
            run = {"trainable_blocks": k, "train_faces": int(len(x_train)), "wall_seconds": round(wall, 2),
                   "loop_seconds": round(m["train_seconds"], 2), "setup_seconds": round(wall - m["train_seconds"], 2),
                   "trunk_cached": m["trunk_cached"], "amp": m["amp"],
                   "train_faces_per_s": round(len(x_train) * epochs / m["train_seconds"], 1),
                   "history": [{k2: round(v, 4) if isinstance(v, float) else v for k2, v in h.items()}
                               for h in m["history"]],
                   "trainable_parameters": int(sum(p.numel() for p in load_recognizer(path).model.backbone.parameters()
                                                   if p.requires_grad))}
            print("trained", {k2: v for k2, v in run.items() if k2 != "history"}, flush=True)
            run.update(score(TorchEmbedder(load_recognizer(path, args.device)), f"sface fine-tuned, last {k} stages"))
            res["finetuned"].append(run)
    res["total_seconds"] = round(time.perf_counter() - t_all, 1)
    dev = "cuda" if cuda else "cpu"
    out = Path(args.out) if args.out else OUT / f"finetune_sface_{dev}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out} in {res['total_seconds']} s", flush=True)


if __name__ == "__main__":
    main()
