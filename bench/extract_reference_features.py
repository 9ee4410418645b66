"""Embed the shared real face sets once with SFace, for the benchmarks and slow tests.

    python bench/extract_reference_features.py [--force] [lfw|glint|att ...]

Writes ``$FACECURATE_CACHE/features/<set>_sface.npz`` (default cache: ``.cache/`` in the repo).
Sets already in the cache are skipped unless ``--force``; sets whose data is absent are skipped
with a message. ``bin/test`` runs this first, so the slow tests on real faces always have their
features (all of LFW takes about 5 minutes on 2 cores, once).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.recognition.embedders import OnnxEmbedder  # noqa: E402
from pipeline.recognition.extraction import extract_features, list_images  # noqa: E402
from pipeline.features import save_features  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACECURATE_SHARED_DATA", ROOT.parent / "shared" / "data"))
CACHE = Path(os.environ.get("FACECURATE_CACHE", ROOT / ".cache"))
SETS = {
    "lfw": (DATA / "lfw" / "images_deepfunneled", False),
    "glint": (DATA / "glint-sample", True),
    "att": (DATA / "att_faces", False),
}


def main(names: list[str], force: bool = False) -> None:
    emb = None
    for name in names:
        root, aligned = SETS[name]
        out = CACHE / "features" / f"{name}_sface.npz"
        if out.is_file() and not force:
            print(f"{name}: cached at {out}")
            continue
        if not root.is_dir():
            print(f"{name}: no data at {root}, skipped")
            continue
        emb = emb or OnnxEmbedder()
        paths, labels = list_images(root, labeled=True)
        t0 = time.time()
        bar = tqdm(total=len(paths), desc=name, mininterval=5)
        res = extract_features(
            paths, emb, labels=labels, aligned=aligned,
            progress=lambda i, n: bar.update(1),
        )
        bar.close()
        secs = time.time() - t0
        save_features(out, res.features)
        meta = {"set": name, "images": len(paths), "embedded": len(res.features), "failed": res.failed,
                "seconds": round(secs, 1), "images_per_s": round(len(paths) / secs, 2)}
        out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        print(json.dumps({k: v for k, v in meta.items() if k != "failed"}), "failed:", len(res.failed))


if __name__ == "__main__":
    args = sys.argv[1:]
    force = "--force" in args
    args = [a for a in args if a != "--force"]
    unknown = sorted(set(args) - set(SETS))
    if unknown:
        sys.exit(f"unknown set(s) {unknown}; choose from {sorted(SETS)}")
    main(args or ["att", "glint", "lfw"], force=force)
