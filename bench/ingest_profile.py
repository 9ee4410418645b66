"""Where ingestion's time goes for in-the-wild photos (issue 18, item 2), stage by stage, without the
database: decode, detection (YuNet, resize included), alignment, the crop PNG, the thumbnails; the PNG and
thumbnail encoders as on main (Pillow: PNG level 6, Lanczos thumbnail from full size) beside the new ones
(OpenCV: PNG level 1, area-averaged resize), on the same images.

    nice -n 10 .venv/bin/python bench/ingest_profile.py --images 20

"detect + align" is what the command line does per photo; the rest is what ingestion adds.
Writes bench/results/ingest_profile.{json,md}.
"""
from __future__ import annotations

import argparse
import collections
import io
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "facecurate.settings")
os.environ.setdefault("FACECURATE_SECRET_KEY", "bench")
from bench import harness  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402


def png_main(crop_bgr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop_bgr[:, :, ::-1])).save(buf, format="PNG")
    return buf.getvalue()


def thumb_main(image_bgr: np.ndarray, box=None) -> bytes:
    from PIL import Image

    from facecurate.datasets.services.detect import face_region
    from facecurate.datasets.services.ingest import THUMB_SIZE

    image_bgr = face_region(image_bgr, box)
    img = Image.fromarray(np.ascontiguousarray(image_bgr[:, :, ::-1]))
    img.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def main() -> None:
    import django

    django.setup()
    from facecurate.datasets.services.detect import ingestion_detector, keep_detections, png_bytes, thumbnail_bytes
    from facecurate.datasets.services.ingest import decode_image
    from pipeline.recognition.faces import align_face

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20)
    args = ap.parse_args()
    paths = sorted((SHARED_DATA / "group-photos").glob("*"))[:args.images]
    det = ingestion_detector()
    t_ = collections.Counter()
    faces = 0

    def tick(key, fn, *a):
        t0 = time.perf_counter()
        out = fn(*a)
        t_[key] += time.perf_counter() - t0
        return out

    for p in paths:
        px = tick("decode", decode_image, p)
        tick("image thumbnail, main (Pillow Lanczos)", thumb_main, px)
        tick("image thumbnail, new (OpenCV area)", thumbnail_bytes, px)
        dets = tick("detect (YuNet, resize included)", det.detect, px)
        kept, _ = keep_detections(dets, px.shape, labeled=False)
        for d in kept:
            crop = tick("align", align_face, px, d.landmarks)
            tick("crop PNG, main (Pillow level 6)", png_main, crop)
            tick("crop PNG, new (OpenCV level 1)", png_bytes, crop)
            tick("face thumbnail, main", thumb_main, px, d.box)
            tick("face thumbnail, new", thumbnail_bytes, px, d.box)
            faces += 1
    cli = t_["decode"] + t_["detect (YuNet, resize included)"] + t_["align"]
    main_total = cli + sum(v for k, v in t_.items() if "main" in k)
    new_total = cli + sum(v for k, v in t_.items() if "new" in k)
    res = {"images": len(paths), "faces": faces, "seconds": {k: round(v, 3) for k, v in t_.items()},
           "decode_detect_align_s": round(cli, 2), "ingest_main_s": round(main_total, 2),
           "ingest_new_s": round(new_total, 2), "share_of_cli_rate_main": round(cli / main_total, 3),
           "share_of_cli_rate_new": round(cli / new_total, 3)}
    lines = ["# Where ingestion's time goes (in-the-wild photos, no database)", "",
             f"{len(paths)} group photos, {faces} kept faces.", "", "| stage | seconds | share of main's total |",
             "|---|---|---|"]
    for k, v in sorted(t_.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {k} | {v:.2f} | {100 * v / main_total:.1f} % |")
    lines += ["", f"decode + detect + align (the command line's work): {cli:.2f} s. Ingestion per photo with main's "
              f"encoders: {main_total:.2f} s ({100 * cli / main_total:.0f} % of the command line's rate); with the new "
              f"ones: {new_total:.2f} s ({100 * cli / new_total:.0f} %). Database writes are not in these numbers.",
              "", "The machine is shared (load average in the header): compare rows, not absolute times."]
    print("\n".join(lines))
    harness.write_results("ingest_profile", res, "\n".join(lines))


if __name__ == "__main__":
    main()
