"""Faces and SFace activations of the low-resolution LFW target domain, computed once and cached.

Groups (see ``bench/retrain_domain_data.py``): ``train`` / ``val`` / ``test`` (target domain, degraded),
``labeled`` (clean), ``labeled_lr`` (two low-resolution copies of every labeled face, at 12/16/20/24 px
chosen by a fixed seed: ``pipeline.retraining.lowres.lowres_copies``, the product's augmentation), ``pairs``
(clean LFW pairs images).

Activations: the first ``CUT`` stages of the parent SFace (input .. conv_7, the expensive part on a CPU)
run once per face (and per mirrored face for training groups) and are kept as float16 ``.npy`` files;
the rest of a frozen trunk (``stages[CUT:16 - K]`` for ``K`` trainable stages) runs on them and is
cached per ``K``. Everything lives under ``$FACECURATE_CACHE/retrain_domain/<domain key>/``.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from bench.retrain_domain_data import CACHE, DomainConfig, load_crop_cache, pair_paths, split_identities
from pipeline.retraining.lowres import degrade, lowres_copies

CUT = 8  # stages[:CUT] = input normalisation, stem, conv_2 .. conv_7 (output 512 x 14 x 14)
GROUPS = ("train", "val", "test", "labeled", "labeled_lr", "pairs")
FLIPPED = ("train", "labeled", "labeled_lr")  # groups that train (mirrored activations for flip augmentation)


def domain_dir(cfg: DomainConfig) -> Path:
    key = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]
    d = CACHE / "retrain_domain" / key
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return d


def split_groups(cfg: DomainConfig, names: tuple[str, ...], extra: list[str] = ()) -> tuple[dict, dict]:
    """The split's ``names`` groups as {group: (crops (N, 112, 112, 3) uint8 BGR, identity names (N,), LFW
    relative paths (N,))}, target groups degraded, and the crop cache by path (``extra`` paths detected too)."""
    from bench.retrain_domain_data import crops_for

    split = split_identities(cfg)
    wanted = [p for name in names for f in getattr(split, name).values() for p in f]
    crops_for(wanted + list(extra))  # detect and align whatever the crop cache lacks
    have, _ = load_crop_cache()
    out = {}
    for name in names:
        paths = [p for f in getattr(split, name).values() for p in f if p in have]
        crops = np.stack([have[p] for p in paths])
        if name != "labeled":
            crops = degrade(crops, cfg.resolution, cfg.grey)
        out[name] = (crops, np.array([p.split("/")[0] for p in paths]), np.array(paths))
    return out, have


def build_groups(cfg: DomainConfig) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{group: (crops (N, 112, 112, 3) uint8 BGR, identity names (N,), LFW relative paths (N,))}."""
    out, have = split_groups(cfg, ("train", "val", "test", "labeled"), pair_paths())
    lab_c, lab_y, lab_p = out["labeled"]
    lowres, src = lowres_copies(lab_c)  # the product's augmentation (two copies, 12/16/20/24 px, seed 1)
    out["labeled_lr"] = (lowres, lab_y[src], lab_p[src])
    pp = [p for p in pair_paths() if p in have]
    out["pairs"] = (np.stack([have[p] for p in pp]), np.array([p.split("/")[0] for p in pp]), np.array(pp))
    return out


def _save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    tmp.rename(path)


def stage_activations(d: Path, groups: dict, device: str) -> None:
    """The parent's first CUT stages over every group (and mirrored training groups), cached."""
    from pipeline.recognition.sface_torch import cache_trunk_activations, load_sface_torch

    trunk = load_sface_torch(raw_input=False).stages[:CUT].eval()
    for name in GROUPS:
        for flip in (False, True) if name in FLIPPED else (False,):
            f = d / f"cut{CUT}" / f"{name}{'_flip' if flip else ''}.npy"
            if f.exists():
                continue
            f.parent.mkdir(exist_ok=True)
            t0 = time.perf_counter()
            tmp = f.with_name(f.name + ".tmp.npy")
            cache_trunk_activations(trunk, groups[name][0], 64, flip=flip, out_path=tmp, device=device)
            tmp.rename(f)
            print(f"activations {name}{' flipped' if flip else ''}: {len(groups[name][0])} faces in "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


@torch.inference_mode()
def run_stages(stages: torch.nn.Module, x: np.ndarray, device: str, batch: int = 128) -> np.ndarray:
    stages = stages.to(device).eval()
    out = [stages(torch.from_numpy(np.asarray(x[i:i + batch], np.float32)).to(device)).float().cpu().numpy()
           for i in range(0, len(x), batch)]
    return np.concatenate(out)


def trunk_acts(d: Path, k: int, name: str, device: str, flip: bool = False) -> np.ndarray:
    """Activations of the frozen trunk when the last ``k`` stages train: ``stages[CUT:16 - k]`` on the cache."""
    from pipeline.recognition.sface_torch import NUM_STAGES, load_sface_torch

    stem = f"{name}{'_flip' if flip else ''}.npy"
    base = np.load(d / f"cut{CUT}" / stem, mmap_mode="r")
    end = 1 + NUM_STAGES - k
    if end < CUT:
        raise ValueError(f"at most {1 + NUM_STAGES - CUT} trainable stages on this cache, got {k}")
    if end == CUT:
        return np.asarray(base)
    f = d / f"k{k}" / stem
    if not f.exists():
        f.parent.mkdir(exist_ok=True)
        start, src = CUT, base
        for k2 in range(1 + NUM_STAGES - CUT - 1, k, -1):  # reuse a deeper cache when there is one
            if (d / f"k{k2}" / stem).exists():
                start, src = 1 + NUM_STAGES - k2, np.load(d / f"k{k2}" / stem, mmap_mode="r")
                break
        parent = load_sface_torch(raw_input=False)
        _save(f, run_stages(parent.stages[start:end], src, device).astype(np.float16))
    return np.load(f)
