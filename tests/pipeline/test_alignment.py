"""faces.py on real LFW faces: our alignment equals OpenCV's FaceRecognizerSF.alignCrop, and a broken
alignment or a wrong pixel normalisation drops verification accuracy on an LFW subset."""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import pytest

from pipeline.recognition.embedders import OnnxEmbedder
from pipeline.evaluation.verification import best_threshold, read_lfw_pairs
from pipeline.recognition.faces import FaceDetector, align_face, bundled_model, primary_face, read_image
from tests.pipeline.recognizer_data import shared_path

#: Landmarks in the wrong order: mouth corners where the eyes go (an upside-down face).
SHUFFLE = [3, 4, 2, 0, 1]


def _lfw(rel: str) -> np.ndarray:
    return read_image(shared_path("lfw", "images_deepfunneled") / rel)


@lru_cache(maxsize=None)
def _detector() -> FaceDetector:
    return FaceDetector()


def _detect(img):
    dets = _detector().detect(img)
    return dets[primary_face(dets, img.shape)]


@pytest.mark.parametrize("rel", ["Abel_Pacheco/Abel_Pacheco_0001.jpg", "Akhmed_Zakayev/Akhmed_Zakayev_0002.jpg",
                                 "George_W_Bush/George_W_Bush_0010.jpg"])
def test_align_face_equals_opencv_align_crop(rel):
    img = _lfw(rel)
    d = _detect(img)
    row = np.concatenate([d.box, d.landmarks.reshape(-1), [d.score]]).astype(np.float32)[None]
    ref = cv2.FaceRecognizerSF.create(str(bundled_model("recognizer")), "").alignCrop(img, row)
    ours = align_face(img, d.landmarks)
    assert ours.shape == ref.shape == (112, 112, 3)
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.mean() < 0.05 and diff.max() <= 3
    shuffled = align_face(img, d.landmarks[SHUFFLE])
    assert np.abs(shuffled.astype(int) - ref.astype(int)).mean() > 20


def test_sface_features_equal_opencv_feature():
    img = _lfw("Abel_Pacheco/Abel_Pacheco_0004.jpg")
    d = _detect(img)
    crop = align_face(img, d.landmarks)
    ref = cv2.FaceRecognizerSF.create(str(bundled_model("recognizer")), "").feature(crop).reshape(-1)
    ours = OnnxEmbedder().embed(crop[None])[0]
    assert float(ours @ (ref / np.linalg.norm(ref))) > 0.9999


@pytest.mark.slow
def test_broken_alignment_or_normalisation_drops_lfw_accuracy():
    """Fold 1 of pairs.txt, first 50 same + 50 different pairs (about 200 images)."""
    pairs = [p for p in read_lfw_pairs(shared_path("lfw", "pairs.txt")) if p[3] == 0]
    pairs = pairs[:50] + pairs[300:350]
    same = np.array([p[2] for p in pairs])
    names = sorted({p[0] for p in pairs} | {p[1] for p in pairs})
    good, broken = {}, {}
    for rel in names:
        img = _lfw(rel)
        lm = _detect(img).landmarks
        good[rel], broken[rel] = align_face(img, lm), align_face(img, lm[SHUFFLE])

    def accuracy(crops, embedder):
        emb = dict(zip(names, embedder.embed(np.stack([crops[n] for n in names]))))
        scores = np.array([emb[a] @ emb[b] for a, b, _, _ in pairs])
        return best_threshold(scores, same)[1]  # best threshold on the subset itself: an upper bound

    sface = OnnxEmbedder()
    ok = accuracy(good, sface)
    assert ok >= 0.97
    assert accuracy(broken, sface) < ok - 0.2  # measured 0.58 vs 1.00
    assert accuracy(good, OnnxEmbedder(scale=1 / 255.0)) < ok - 0.15  # pixels in [0, 1]: measured 0.71
