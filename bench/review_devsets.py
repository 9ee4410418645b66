"""Hard dev sets for review (issue 16): glint-sample's aligned 112x112 crops downscaled to ``px`` pixels
and back (INTER_AREA down, INTER_LINEAR up), embedded with the bundled SFace. Cached as
``.cache/features/glint_lowres<px>_sface.npz`` (embeddings, labels, paths), rebuilt when absent.

    nice -n 10 .venv/bin/python -m bench.review_devsets 20 16
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "features"
DATA = ROOT.parent / "shared" / "data" if (ROOT.parent / "shared" / "data").is_dir() else Path("/work/shared/data")


def glint_files() -> list[Path]:
    return sorted((DATA / "glint-sample").glob("*/*.png"))


def lowres_path(px: int) -> Path:
    return CACHE / f"glint_lowres{px}_sface.npz"


def build(px: int) -> Path:
    import cv2

    from pipeline.recognition.embedders import OnnxEmbedder

    out = lowres_path(px)
    if out.exists():
        return out
    emb, files = OnnxEmbedder(), glint_files()
    crops = []
    for f in files:
        img = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        small = cv2.resize(img, (px, px), interpolation=cv2.INTER_AREA)
        crops.append(cv2.resize(small, (112, 112), interpolation=cv2.INTER_LINEAR))
    x = emb.embed(np.stack(crops))
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, embeddings=x, labels=np.array([f.parent.name for f in files]),
             paths=np.array([str(f.relative_to(DATA)) for f in files]))
    tmp.rename(out)
    return out


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, person labels) of dev set ``name``: glint, glint20, glint16."""
    path = CACHE / "glint_sface.npz" if name == "glint" else lowres_path(int(name.removeprefix("glint")))
    d = np.load(path)
    return d["embeddings"].astype(np.float32), d["labels"]


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["20", "16"]:
        print(build(int(arg)))
