"""Embedding a fixed benchmark set (LFW pairs' 7,701 crops) with fine-tuned SFace versions at inference speed.

A retraining fine-tunes only SFace's last ``trainable_blocks`` stages; the stages before them (the trunk)
keep the parent's weights. Their output for the benchmark's crops is therefore the same for every version
that shares that trunk, and it is most of the network's cost. So the trunk runs once over the crops (through
OpenVINO on the CPU where it can: ``pipeline.recognition.ov_infer``) and
its activations are kept on disk (float16 ``.npy``, memory-mapped) under
``ARTIFACT_ROOT/benchmarks/trunk-<crops key>-<trunk key>.npy``, where the trunk key is the sha256 of the
trunk's weights and buffers (names, shapes, bytes): a version whose trunk differs in any way (more stages
trained, batch-norm statistics re-estimated) gets a cache of its own. Each version then runs only its
trained stages over the cached activations.

Anything else (ONNX versions, MobileFaceNet, SFace with every stage trained) is embedded in full, a torch
network through OpenVINO once the embedder has seen ``ov_infer.WORTH_IT`` faces (11 against 22 ms a face for a
fully fine-tuned SFace on the 2-core machine).
"""
from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

from ..models import RecognizerVersion
from .artifacts import artifact_path
from .versions import embedder_for

BATCH = 64


def trunk_of(version: RecognizerVersion, device: str = "cpu"):
    """(SFaceNet backbone, split index, trunk key) of a fine-tuned SFace version; None for anything else."""
    from pipeline.recognition.models import TorchEmbedder
    from pipeline.recognition.sface_torch import SFaceNet

    if version.kind != RecognizerVersion.Kind.CHECKPOINT:
        return None
    emb = embedder_for(version, device)
    if not isinstance(emb, TorchEmbedder) or not isinstance(emb.recognizer.model.backbone, SFaceNet):
        return None
    net = emb.recognizer.model.backbone
    split = net.split_index()
    if split <= 1:  # every stage trained: nothing to share
        return None
    h = hashlib.sha256()
    for name, t in net.stages[:split].state_dict().items():
        arr = t.detach().cpu().contiguous().numpy()
        h.update(f"{name}:{arr.dtype}:{arr.shape}".encode())
        h.update(arr.tobytes())
    return net, split, h.hexdigest()


def trunk_activations(net, split: int, crops: np.ndarray, path, progress: Callable[[int, int], None] | None = None,
                      device: str = "cpu") -> np.ndarray:
    """The trunk's activations of ``crops``, from ``path`` when there, else computed once and saved there."""
    import torch

    from pipeline.features import atomic_path
    from pipeline.recognition.models import crops_to_tensor
    from pipeline.recognition.ov_infer import WORTH_IT, compile_module

    if path.is_file():
        arr = np.load(path, mmap_mode="r")
        if arr.shape[0] == len(crops):
            return arr
    trunk = net.stages[:split].to(device).eval()
    fast = compile_module(trunk, crops_to_tensor(crops[:2])) if device == "cpu" and len(crops) >= WORTH_IT else None
    out = None
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, torch.inference_mode():
        for s in range(0, len(crops), BATCH):
            if progress is not None:
                progress(s, len(crops))
            x = crops_to_tensor(crops[s:s + BATCH])
            y = fast(x.numpy()) if fast is not None else trunk(x.to(device)).float().cpu().numpy()
            if out is None:
                out = np.lib.format.open_memmap(str(tmp), mode="w+", dtype=np.float16, shape=(len(crops),) + y.shape[1:])
            out[s:s + len(y)] = y
        out.flush()
        del out
    if progress is not None:
        progress(len(crops), len(crops))
    return np.load(path, mmap_mode="r")


def embed_head(net, split: int, acts: np.ndarray, progress: Callable[[int, int], None] | None = None,
               device: str = "cpu") -> np.ndarray:
    """The trained stages over cached trunk activations -> (N, 128) float32, L2-normalised."""
    import torch
    import torch.nn.functional as F

    head = net.stages[split:].to(device).eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(acts), 256):
            if progress is not None:
                progress(s, len(acts))
            x = torch.from_numpy(np.asarray(acts[s:s + 256], dtype=np.float32)).to(device)
            out.append(F.normalize(head(x).float(), dim=1).cpu().numpy())
    if progress is not None:
        progress(len(acts), len(acts))
    return np.concatenate(out) if out else np.zeros((0, 128), np.float32)


def embed_fixed_set(version: RecognizerVersion, crops: np.ndarray, crops_key: str, *, device: str = "cpu",
                    progress: Callable[[str, int, int], None] | None = None) -> tuple[np.ndarray, dict]:
    """Embed a fixed, cached crop set (``crops_key`` names it): (embeddings, how) where ``how`` says whether
    the trunk cache was used, made or not applicable. ``progress(step, done, total)``."""
    info = trunk_of(version, device)
    if info is None:
        embedder = embedder_for(version, device)
        out = []
        for s in range(0, len(crops), BATCH):
            if progress is not None:
                progress("embed", s, len(crops))
            out.append(embedder.embed(crops[s:s + BATCH]))
        if progress is not None:
            progress("embed", len(crops), len(crops))
        return (np.concatenate(out) if out else np.zeros((0, 128), np.float32)), {"trunk_cache": "not applicable"}
    net, split, key = info
    path = artifact_path(f"benchmarks/trunk-{crops_key[:16]}-{key[:16]}.npy")
    made = not path.is_file()
    acts = trunk_activations(net, split, crops, path, (lambda d, t: progress("trunk", d, t)) if progress else None,
                             device)
    emb = embed_head(net, split, acts, (lambda d, t: progress("head", d, t)) if progress else None, device)
    return emb, {"trunk_cache": "made" if made else "used", "trunk_key": key[:16], "frozen_stages": split - 1}
