"""The ingestion encoders (issue 18): crops stay lossless PNGs (what the embed stage reads back is the
crop that was aligned), thumbnails are JPEGs at most THUMB_SIZE on a side with the image's aspect."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def test_crop_png_is_lossless_and_thumbnails_keep_aspect():
    from facecurate.datasets.services.detect import png_bytes, thumbnail_bytes
    from facecurate.datasets.services.ingest import THUMB_SIZE

    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(png_bytes(crop))).convert("RGB"))[:, :, ::-1]
    assert np.array_equal(back, crop)
    photo = rng.integers(0, 256, (900, 1600, 3), dtype=np.uint8)
    thumb = Image.open(io.BytesIO(thumbnail_bytes(photo)))
    assert thumb.format == "JPEG" and max(thumb.size) == THUMB_SIZE and thumb.size[1] == round(900 * THUMB_SIZE / 1600)
    small = Image.open(io.BytesIO(thumbnail_bytes(photo[:40, :60])))
    assert small.size == (60, 40)  # never enlarged
    face = Image.open(io.BytesIO(thumbnail_bytes(photo, [700, 400, 100, 120])))
    assert face.size == (THUMB_SIZE, THUMB_SIZE)  # the box grown by half, squared
