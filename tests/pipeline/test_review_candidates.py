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


def test_lone_groups_skip_the_pairs_answered_no_and_keep_the_nearest_lone_faces():
    from pipeline.review.candidates import lone_groups

    angles = np.array([0.0, 0.1, 0.2, 0.3, 1.5])  # clusters on a circle: row 0 nearest 1, then 2, then 3
    cent = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    ids = np.array([10, 11, 12, 13, 14])
    assert lone_groups(cent, ids, [0], set(), k=2, deep_max=40, limit=5) == {10: [11, 12]}
    assert lone_groups(cent, ids, [0], {(10, 11)}, k=2, deep_max=40, limit=5) == {10: [12, 13]}  # past the "no"
    got = lone_groups(cent, ids, [4, 0], set(), k=1, deep_max=40, limit=1)
    assert got == {10: [11]}  # row 0's nearest open cluster is closer than row 4's
