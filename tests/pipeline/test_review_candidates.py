"""The merge queue's candidate helpers (pipeline/review/candidates.py)."""
from __future__ import annotations

import numpy as np
import pytest


def test_members_of_gives_each_labels_faces_in_order_and_leaves_out_the_rest():
    from pipeline.review.candidates import members_of

    labels = np.array([2, -1, 0, 2, 5, 0, 1])
    got = members_of(labels, 3)
    assert [m.tolist() for m in got] == [[2, 5], [6], [0, 3]]  # -1 and 5 (>= k) are in no cluster
    with pytest.raises(ValueError):
        members_of(labels.reshape(1, -1), 3)
