"""How long the LFW-pairs evaluation of a retraining takes, before (main's code) and after (the trunk cache).

    nice -n 10 .venv/bin/python bench/retrain_lfw_eval.py     # 2 folds x 150 + 150 pairs (a few minutes)
    nice -n 10 .venv/bin/python bench/retrain_lfw_eval.py --folds 10 --per-class 300   # the whole protocol

In-process, on the embedded default (SQLite, a fresh ``bench/out/retrain_lfw_eval``): the parent is the
bundled SFace (ONNX), the new version an SFace checkpoint with its last 2 stages changed, as the default
retraining (``trainable_blocks`` 2) leaves it. A subset of the real ``pairs.txt`` (``--per-class`` same and
different pairs of each of the first ``--folds`` folds) over the real LFW images. Three timings of ``lfw_benchmark([parent, new])``, the function a retraining calls:

* **before**: main's ``retrain_eval`` (loaded from ``git show main:...``) on an empty artifact root: detect
  and align every image, embed them with the parent, then with the new version (the whole network);
* **after, first retraining**: this branch on an empty artifact root: detect (cached by file + detector),
  the parent (scored once, kept), the new version's frozen trunk once (cached), its trained stages;
* **after, a later retraining** (crops, the parent's score and the trunk cached: the usual case, every
  retraining of the same parent): only the new version's trained stages over the cached trunk.

Scaled rows multiply the measured seconds by (7,701 images of the full protocol) / (images measured):
every step is linear in the images. Writes bench/results/retrain_lfw_eval.{json,md}.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "retrain_lfw_eval"
SHARED = Path(os.environ.get("FACECURATE_SHARED_DATA", ROOT.parent / "shared" / "data"))
FULL_IMAGES = 7701


def _env() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "var").mkdir(parents=True)
    for k in ("FACECURATE_DATABASE_URL", "FACECURATE_BROKER_URL"):
        os.environ.pop(k, None)
    os.environ.update({"FACECURATE_VAR_DIR": str(OUT / "var"), "FACECURATE_SECRET_KEY": "bench",
                       "DJANGO_SETTINGS_MODULE": "facecurate.settings", "FACECURATE_LOG_LEVEL": "WARNING"})


def _lfw_subset(folds: int, per_class: int) -> tuple[Path, int, int]:
    """A shared-data folder whose lfw/pairs.txt holds the first ``per_class`` same and different pairs of
    each of the first ``folds`` folds (images linked)."""
    src = SHARED / "lfw"
    lines = (src / "pairs.txt").read_text().splitlines()
    n, per = map(int, lines[0].split())
    folds, per_class = min(folds, n), min(per_class, per)
    body = []
    for f in range(folds):
        start = 1 + f * 2 * per
        body += lines[start:start + per_class] + lines[start + per:start + per + per_class]
    root = OUT / "shared" / "lfw"
    root.mkdir(parents=True)
    (root / "images_deepfunneled").symlink_to(src / "images_deepfunneled")
    (root / "pairs.txt").write_text(f"{folds}\t{per_class}\n" + "\n".join(body) + "\n")
    return root.parent, folds, per_class


def _main_module():
    """main's retrain_eval, imported as a sibling module so its relative imports resolve."""
    text = subprocess.run(["git", "show", "main:facecurate/recognition/services/retrain_eval.py"], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout
    path = OUT / "retrain_eval_main.py"
    path.write_text(text)
    name = "facecurate.recognition.services.retrain_eval_main"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _versions():
    import torch

    from facecurate.recognition.models import RecognizerVersion
    from facecurate.recognition.services import artifacts
    from facecurate.recognition.services.versions import active_version
    from pipeline.recognition.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
    from pipeline.recognition.models import build_model

    config = {"backbone": "sface", "trainable_blocks": 2}
    model = build_model(config, 2)
    with torch.no_grad():
        for p in model.backbone.stages[-2:].parameters():
            p.mul_(1.02)
    rel = "checkpoints/bench-new.pt"
    save_checkpoint(artifacts.artifact_path(rel), {"format": CHECKPOINT_FORMAT, "config": config,
                                                   "class_names": ["a", "b"], "model": model.state_dict(),
                                                   "input_dim": None, "metrics": {}, "epoch": 1})
    parent = active_version()
    new = RecognizerVersion.objects.create(name="bench-new", kind="checkpoint", path=rel, parent=parent)
    return parent, new


def _fresh_artifacts(settings, tag: str) -> None:
    from facecurate.recognition.services import versions

    settings.ARTIFACT_ROOT = OUT / f"artifacts-{tag}"
    versions._EMBEDDERS.clear()


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return round(time.perf_counter() - t0, 1), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=2, help="the first N folds (at least 2: thresholds come from "
                                                             "the other folds)")
    ap.add_argument("--per-class", type=int, default=150, help="same and different pairs taken from each fold")
    args = ap.parse_args()
    _env()
    shared, folds, per_class = _lfw_subset(max(2, args.folds), args.per_class)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from bench.harness import facts, write_results
    from facecurate.recognition.services import artifacts, retrain_eval

    call_command("migrate", verbosity=0)
    settings.SHARED_DATA = shared
    settings.ARTIFACT_ROOT = OUT / "artifacts-model"
    old = _main_module()
    parent, new = _versions()
    ckpt = artifacts.artifact_path(new.path)
    rows = []

    _fresh_artifacts(settings, "before")
    artifacts.artifact_path(new.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt, artifacts.artifact_path(new.path))
    secs, res = _timed(old.lfw_benchmark, [parent, new])
    images = len(retrain_eval.read_lfw_pairs(shared / "lfw" / "pairs.txt"))  # pairs, for the record
    crops_npz = artifacts.artifact_path("benchmarks/lfw-pairs-crops.npz")
    import numpy as np

    n_images = int(len(np.load(crops_npz)["paths"]))
    rows.append({"case": "before (main): detect, parent, new version in full", "seconds": secs,
                 "lfw_mean_new": res["versions"][str(new.pk)]["lfw_mean"],
                 "lfw_mean_parent": res["versions"][str(parent.pk)]["lfw_mean"]})

    _fresh_artifacts(settings, "after")
    artifacts.artifact_path(new.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt, artifacts.artifact_path(new.path))
    secs, res = _timed(retrain_eval.lfw_benchmark, [parent, new])
    rows.append({"case": "after, first retraining: detect, parent, trunk once, trained stages", "seconds": secs,
                 "lfw_mean_new": res["versions"][str(new.pk)]["lfw_mean"],
                 "lfw_mean_parent": res["versions"][str(parent.pk)]["lfw_mean"],
                 "trunk_cache": res["versions"][str(new.pk)]["trunk_cache"]})

    artifacts.artifact_path(f"benchmarks/lfw-pairs-version-{new.pk}.json").unlink()
    from facecurate.recognition.services import versions

    versions._EMBEDDERS.clear()
    secs, res = _timed(retrain_eval.lfw_benchmark, [parent, new])
    rows.append({"case": "after, a later retraining: trained stages over the cached trunk", "seconds": secs,
                 "lfw_mean_new": res["versions"][str(new.pk)]["lfw_mean"],
                 "lfw_mean_parent": res["versions"][str(parent.pk)]["lfw_mean"],
                 "trunk_cache": res["versions"][str(new.pk)]["trunk_cache"]})
    scale = FULL_IMAGES / n_images
    for r in rows:
        r["seconds_scaled_to_full_protocol"] = round(r["seconds"] * scale, 1)
    data = {"folds": folds, "pairs_per_class_per_fold": per_class, "pairs": images, "images": n_images, "full_protocol_images": FULL_IMAGES,
            "scale": round(scale, 3), "rows": rows, "machine_at_start": facts()}
    md = [f"LFW pairs inside a retraining: {per_class} same + {per_class} different pairs from each of {folds} of "
          f"the 10 folds ({images} pairs, {n_images} images), parent the "
          "bundled SFace (ONNX), new version SFace with its last 2 stages changed (trainable_blocks 2).",
          "Scaled: seconds x 7,701 / images measured (each step is linear in the images).", "",
          "| case | seconds measured | seconds scaled to 10 folds | LFW new | LFW parent |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        md.append(f"| {r['case']} | {r['seconds']} | {r['seconds_scaled_to_full_protocol']} | "
                  f"{r['lfw_mean_new']:.4f} | {r['lfw_mean_parent']:.4f} |")
    write_results("retrain_lfw_eval", data, "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
