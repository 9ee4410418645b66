"""Low-resolution copies of labeled faces (pipeline.retraining.lowres): the augmentation a retraining toward a
low-resolution target domain adds, on real LFW faces."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.retraining.lowres import COPIES, LOWRES_SIZES, degrade, lowres_copies, with_lowres_copies
from tests.app.retrain_fixtures import lfw_crops


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return lfw_crops(["Bill_Gates", "Kofi_Annan"], 2)[1]  # 4 aligned 112 px crops


def test_degrade_is_area_down_then_linear_back_to_112(faces):
    out = degrade(faces, 16)
    assert out.shape == faces.shape and out.dtype == np.uint8
    small = cv2.resize(faces[0], (16, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out[0], cv2.resize(small, (112, 112), interpolation=cv2.INTER_LINEAR))
    assert np.abs(out.astype(int) - faces).mean() > 2  # detail is lost
    with pytest.raises(ValueError):
        degrade(faces[:, :64], 16)


def test_lowres_copies_are_seeded_degraded_copies_of_each_face(faces):
    out, src = lowres_copies(faces)
    assert out.shape == (COPIES * len(faces), 112, 112, 3)
    np.testing.assert_array_equal(src, np.tile(np.arange(len(faces)), COPIES))
    for row, i in enumerate(src):
        assert any(np.array_equal(out[row], degrade(faces[i][None], s)[0]) for s in LOWRES_SIZES), row
    again, _ = lowres_copies(faces)
    np.testing.assert_array_equal(out, again)


def test_with_lowres_copies_adds_copies_of_labeled_rows_only(faces):
    labels = np.array(["identity-1", "identity-2", "run-1-cluster-3", "run-1-cluster-3"])
    weights = np.array([1.0, 1.0, 0.5, 0.25], np.float32)
    labeled = np.array([True, True, False, False])
    crops, lab, w = with_lowres_copies(faces, labels, weights, labeled)
    assert len(crops) == len(lab) == len(w) == 4 + COPIES * 2
    np.testing.assert_array_equal(crops[:4], faces)
    assert sorted(lab[4:]) == ["identity-1"] * COPIES + ["identity-2"] * COPIES
    assert np.all(w[4:] == 1.0)
    same = with_lowres_copies(faces, labels, weights, np.zeros(4, bool))
    assert same[0] is faces and len(same[1]) == 4
