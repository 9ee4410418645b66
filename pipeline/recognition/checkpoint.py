"""Recognizer checkpoints: one format, written temp-then-rename, read with a clear error.

Both training (which writes them) and inference (``models.load_recognizer``) use this module, so
neither imports the other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.features import atomic_path

#: Bumped when the checkpoint's keys change meaning.
CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not our checkpoint"
        raise ValueError(f"{path} is not a readable recognizer checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a facecurate recognizer checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt
