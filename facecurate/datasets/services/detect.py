"""Detection in the worker: one stored image in, its faces (aligned crops, thumbnails) out.

Every face YuNet finds at least ``MIN_FACE_PX`` wide and scored at least ``MIN_FACE_SCORE`` is kept,
best score first. The *primary* face (largest, most central; :func:`pipeline.recognition.faces.primary_face`) of
a labeled image carries the image's identity and is always kept, whatever its size; the other faces
of a labeled image are kept without identity. An aligned dataset's image is itself the one crop.
Files are written atomically (temp then rename) before the rows, so a crash leaves no row without
its files; a redone image overwrites the same content-addressed names.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from django.conf import settings
from django.utils import timezone

from ..models import Face, Image
from .ingest import CROP_SIZE, THUMB_SIZE, IngestError, decode_image
from .storage import media_path, write_atomic


@lru_cache(maxsize=1)
def ingestion_detector():
    from pipeline.recognition.faces import FaceDetector

    return FaceDetector(score_threshold=min(0.6, settings.MIN_FACE_SCORE), max_side=settings.DETECT_MAX_SIDE)


def png_bytes(crop_bgr: np.ndarray) -> bytes:
    """A lossless PNG of a BGR crop. zlib level 1 through OpenCV: a third of the time of Pillow's default
    (level 6) for files 2 % larger; the pixels read back are the same (bench/ingest_profile.py)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(crop_bgr), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR array
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def face_region(image_bgr: np.ndarray, box=None) -> np.ndarray:
    """The face's box grown by half and squared, clipped to the image (the whole image without a box, or
    when the clipped region is under 2 px)."""
    if box is None:
        return image_bgr
    h, w = image_bgr.shape[:2]
    x, y, bw, bh = (float(v) for v in box)
    side = max(bw, bh) * 1.5
    cx, cy = x + bw / 2, y + bh / 2
    left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    right, bottom = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    if right - left >= 2 and bottom - top >= 2:
        return image_bgr[top:bottom, left:right]
    return image_bgr


def thumbnail_bytes(image_bgr: np.ndarray, box=None) -> bytes:
    """A JPEG of the face region (box grown by half, squared) or of the whole image, <= 128 px."""
    image_bgr = face_region(image_bgr, box)
    import cv2

    h, w = image_bgr.shape[:2]
    scale = min(1.0, THUMB_SIZE / max(h, w))
    if scale < 1.0:  # area averaging straight from full size: no full-size copy, no Lanczos over megapixels
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image_bgr), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:  # pragma: no cover
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def keep_detections(dets: list, image_shape, *, labeled: bool) -> tuple[list, int | None]:
    """(kept detections, index of the primary one among them or None); see the module docstring."""
    from pipeline.recognition.faces import primary_face

    big_enough = [d for d in dets
                  if min(float(d.box[2]), float(d.box[3])) >= settings.MIN_FACE_PX and d.score >= settings.MIN_FACE_SCORE]
    if labeled:
        p = primary_face(dets, image_shape)
        if p is None:
            return [], None
        kept = [dets[p]] + [d for d in big_enough if d is not dets[p]]
        kept.sort(key=lambda d: -d.score)
        return kept, next(i for i, d in enumerate(kept) if d is dets[p])
    return big_enough, primary_face(big_enough, image_shape)


def _face(image: Image, index: int, primary: bool, det, crop: np.ndarray, thumb_src: np.ndarray, box) -> Face:
    base = f"{image.dataset.media_dir()}"
    stem = f"{image.sha256}-{index}"
    return Face(
        image=image, dataset_id=image.dataset_id, index=index, is_primary=primary,
        identity_id=image.identity_id if primary else None,
        box=[float(v) for v in det.box] if det is not None else None,
        landmarks=[[float(x), float(y)] for x, y in det.landmarks] if det is not None else None,
        det_score=float(det.score) if det is not None else None,
        crop=write_atomic(f"{base}/crops/{stem}.png", png_bytes(crop)),
        thumbnail=write_atomic(f"{base}/thumbs/{stem}.jpg", thumbnail_bytes(thumb_src, box)),
    )


def _aligned_faces(image: Image, pixels: np.ndarray, detector) -> list[Face]:
    import cv2

    crop = pixels if pixels.shape[:2] == (CROP_SIZE, CROP_SIZE) else cv2.resize(
        pixels, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
    dets = detector.detect(crop)
    image.num_faces = len(dets)
    from pipeline.recognition.faces import primary_face

    p = primary_face(dets, crop.shape)
    det = None
    if p is not None:  # record the detection in source-image coordinates
        d = dets[p]
        sx, sy = pixels.shape[1] / CROP_SIZE, pixels.shape[0] / CROP_SIZE
        det = type(d)(box=np.array([d.box[0] * sx, d.box[1] * sy, d.box[2] * sx, d.box[3] * sy]),
                      landmarks=d.landmarks * np.array([sx, sy]), score=d.score)
    return [_face(image, 0, True, det, crop, crop, None)]


def process_image(image: Image, detector=None) -> list[Face]:
    """Decode, detect, align; write crops and thumbnails; set the image's status. Returns unsaved Faces."""
    from pipeline.recognition.faces import align_face

    detector = detector or ingestion_detector()
    image.error, image.thumbnail, image.num_faces = "", "", None
    try:
        pixels = decode_image(media_path(image.file))
    except IngestError as exc:
        image.status, image.error = Image.Status.ERROR, f"{exc.code}: {exc.message}"
        image.processed_at = timezone.now()
        return []
    image.height, image.width = pixels.shape[:2]
    image.thumbnail = write_atomic(f"{image.dataset.media_dir()}/thumbs/{image.sha256}.jpg", thumbnail_bytes(pixels))
    if image.dataset.aligned:
        faces = _aligned_faces(image, pixels, detector)
    else:
        dets = detector.detect(pixels)
        image.num_faces = len(dets)
        kept, primary = keep_detections(dets, pixels.shape, labeled=image.dataset.is_labeled)
        faces = [_face(image, i, i == primary, d, align_face(pixels, d.landmarks), pixels, d.box)
                 for i, d in enumerate(kept)]
    image.status = Image.Status.OK if faces else Image.Status.NO_FACE
    image.processed_at = timezone.now()
    return faces
