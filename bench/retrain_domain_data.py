"""The low-resolution LFW target domain for bench/retrain_domain.py: identity split, crops, degradation.

Reproducible from ``$FACECURATE_SHARED_DATA/lfw`` alone (seeded):

* **target pool**: LFW identities with >= ``min_target_images`` images (at most ``per_id`` each, the
  first by file name). Shuffled by ``seed`` and split by identity into ``test`` (``test_ids`` people:
  never used for training or for choosing anything), ``val`` (``val_ids`` people: held out of training
  while settings are chosen, scored to choose them) and ``train`` (the rest: the unlabeled training
  faces). Their crops are degraded (``pipeline.retraining.lowres.degrade``) and their names hidden from
  training.
* **labeled**: ``labeled_ids`` LFW identities with ``min_labeled_images`` .. ``min_target_images - 1``
  images (so none is in the target pool), clean crops, at most ``per_id`` each.
* **LFW pairs**: every image of the official ``pairs.txt`` (clean crops) for the forgetting check.

Faces are detected and aligned as the product does (YuNet, 5-point similarity to 112x112,
``pipeline.recognition.faces.detect_and_align``), once, into ``$FACECURATE_CACHE/crops/lfw_crops.npz``.
"""
from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACECURATE_SHARED_DATA", ROOT.parent / "shared" / "data"))
CACHE = Path(os.environ.get("FACECURATE_CACHE", ROOT / ".cache"))
LFW = DATA / "lfw" / "images_deepfunneled"
PAIRS = DATA / "lfw" / "pairs.txt"


@dataclass(frozen=True)
class DomainConfig:
    min_target_images: int = 6  # target pool: LFW people with at least this many images
    min_labeled_images: int = 4  # labeled set: people with this many .. min_target_images - 1
    per_id: int = 10  # images per person at most (the first by file name)
    test_ids: int = 100
    val_ids: int = 50
    labeled_ids: int = 150
    resolution: int = 16  # target faces: 112 px crop -> this size (area) -> 112 (bilinear)
    grey: bool = False  # target faces: also greyscale
    seed: int = 0


@dataclass
class Split:
    train: dict[str, list[str]]  # name -> LFW relative paths (target domain, unlabeled in training)
    val: dict[str, list[str]]
    test: dict[str, list[str]]
    labeled: dict[str, list[str]]  # clean labeled identities

    def facts(self) -> dict:
        return {k: {"identities": len(v), "images": sum(map(len, v.values()))}
                for k, v in asdict(self).items()}


def lfw_people() -> dict[str, list[str]]:
    return {d.name: sorted(f"{d.name}/{f.name}" for f in d.glob("*.jpg")) for d in sorted(LFW.iterdir()) if d.is_dir()}


def split_identities(cfg: DomainConfig) -> Split:
    people = lfw_people()
    pool = sorted(n for n, f in people.items() if len(f) >= cfg.min_target_images)
    lab_pool = sorted(n for n, f in people.items() if cfg.min_labeled_images <= len(f) < cfg.min_target_images)
    rng = np.random.default_rng(cfg.seed)
    pool = [pool[i] for i in rng.permutation(len(pool))]
    lab_pool = [lab_pool[i] for i in rng.permutation(len(lab_pool))]
    if cfg.test_ids + cfg.val_ids >= len(pool) or cfg.labeled_ids > len(lab_pool):
        raise ValueError(f"not enough identities: {len(pool)} in the target pool, {len(lab_pool)} labeled")

    def take(names: list[str]) -> dict[str, list[str]]:
        return {n: people[n][: cfg.per_id] for n in sorted(names)}

    test, val = pool[: cfg.test_ids], pool[cfg.test_ids: cfg.test_ids + cfg.val_ids]
    return Split(train=take(pool[cfg.test_ids + cfg.val_ids:]), val=take(val), test=take(test),
                 labeled=take(lab_pool[: cfg.labeled_ids]))


def _cache_file() -> Path:
    return CACHE / "crops" / "lfw_crops.npz"


def load_crop_cache() -> tuple[dict[str, np.ndarray], set[str]]:
    f = _cache_file()
    if not f.is_file():
        return {}, set()
    with np.load(f, allow_pickle=False) as z:
        return dict(zip(z["paths"].tolist(), z["crops"])), set(z["failed"].tolist())


def crops_for(relpaths: list[str], workers: int = 2, chunk: int = 1500) -> tuple[dict[str, np.ndarray], dict]:
    """Aligned crops of LFW images by relative path, detected once (YuNet + alignment) and cached."""
    from pipeline.features import atomic_save_npz
    from pipeline.recognition.faces import FaceDetector, detect_and_align, read_image

    have, failed = load_crop_cache()
    todo = [p for p in dict.fromkeys(relpaths) if p not in have and p not in failed]
    t0 = time.perf_counter()
    det = FaceDetector()
    for s in range(0, len(todo), chunk):
        part = todo[s: s + chunk]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for rel, face in zip(part, pool.map(lambda r: detect_and_align(read_image(LFW / r), det), part)):
                if face.crop is None:
                    failed.add(rel)
                else:
                    have[rel] = face.crop
        keys = sorted(have)
        atomic_save_npz(_cache_file(), paths=np.asarray(keys, dtype=str), crops=np.stack([have[k] for k in keys]),
                        failed=np.asarray(sorted(failed), dtype=str))
        print(f"detected {s + len(part)}/{len(todo)} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    info = {"detected_now": len(todo), "detect_seconds": round(time.perf_counter() - t0, 1),
            "no_face": sorted(set(relpaths) & failed)}
    return {p: have[p] for p in relpaths if p in have}, info


def pair_paths() -> list[str]:
    from pipeline.evaluation.verification import read_lfw_pairs

    return sorted({p for a, b, _, _ in read_lfw_pairs(PAIRS) for p in (a, b)})
