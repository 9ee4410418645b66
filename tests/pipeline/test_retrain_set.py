"""build_training_set: which unlabeled faces join retraining, under which class, with which weight."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.retraining.training_set import DROP_REASONS, RetrainConfig, UnlabeledFaces, build_training_set

NAN = float("nan")


def faces(*rows: dict) -> UnlabeledFaces:
    """Rows with defaults: run 1, disjoint, unconfirmed, unassigned, no prediction, p- 0.1."""
    d = dict(run_id=1, cluster_id=-1, cluster_confirmed=False, cluster_assigned_identity=-1, overlap_state=0,
             predicted_identity=-1, p_minus=0.1)
    full = [{**d, "face_id": i, **r} for i, r in enumerate(rows)]
    return UnlabeledFaces(
        run_id=np.array([r["run_id"] for r in full]), face_id=np.array([r["face_id"] for r in full]),
        cluster_id=np.array([r["cluster_id"] for r in full]),
        cluster_confirmed=np.array([r["cluster_confirmed"] for r in full], dtype=bool),
        cluster_assigned_identity=np.array([r["cluster_assigned_identity"] for r in full]),
        overlap_state=np.array([r["overlap_state"] for r in full]),
        predicted_identity=np.array([r["predicted_identity"] for r in full]),
        p_minus=np.array([r["p_minus"] for r in full], dtype=np.float64),
    )


def unl_rows(ts):
    """{unlabeled row: (class, weight, source)} for the unlabeled part of a result."""
    m = ts.source != "labeled"
    return {int(r): (int(c), float(w), str(s)) for r, c, w, s in
            zip(ts.row[m], ts.class_index[m], ts.weight[m], ts.source[m])}


LABELED = np.array([9, 5, 5, 9, 9])  # identities 5 -> class 0, 9 -> class 1


def test_labeled_faces_come_first_with_weight_one_and_sorted_classes():
    ts = build_training_set(LABELED, faces())
    np.testing.assert_array_equal(ts.class_index, [1, 0, 0, 1, 1])
    np.testing.assert_array_equal(ts.weight, np.ones(5, np.float32))
    assert list(ts.source) == ["labeled"] * 5 and list(ts.row) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(ts.class_identity, [5, 9])
    assert ts.report["kept"] == {"labeled": 5, "pseudo": 0, "overlap": 0}


def test_soft_weights_are_exactly_one_minus_p_to_the_gamma():
    u = faces(dict(cluster_id=3, p_minus=0.2), dict(cluster_id=3, p_minus=0.5), dict(cluster_id=3, p_minus=0.0))
    ts = build_training_set(LABELED, u, RetrainConfig(gamma=2.0))
    got = unl_rows(ts)
    assert got == {0: (2, pytest.approx(0.64), "pseudo"), 1: (2, pytest.approx(0.25), "pseudo"),
                   2: (2, 1.0, "pseudo")}
    assert ts.report["weight_sum_unlabeled"] == pytest.approx(0.64 + 0.25 + 1.0)
    hard = unl_rows(build_training_set(LABELED, u, RetrainConfig(gamma=2.0, soft=False)))
    assert {r: w for r, (_, w, _) in hard.items()} == {0: 1.0, 1: 1.0, 2: 1.0}


def test_confirmed_cluster_counts_as_p_minus_zero():
    u = faces(dict(cluster_id=0, cluster_confirmed=True, p_minus=0.9),
              dict(cluster_id=0, cluster_confirmed=True, p_minus=NAN),
              dict(cluster_id=1, p_minus=0.9), dict(cluster_id=1, p_minus=0.9))
    got = unl_rows(build_training_set(LABELED, u))
    assert got[0][1] == 1.0 and got[1][1] == 1.0  # confirmed: weight 1 whatever p- said, NaN included
    assert got[2][1] == pytest.approx(0.1) and got[3][1] == pytest.approx(0.1)
    assert build_training_set(LABELED, u).report["clusters"]["confirmed"] == 1


def test_unclustered_and_rejected_and_overlap_faces_are_left_out_by_default():
    u = faces(dict(cluster_id=-1), dict(overlap_state=-1, cluster_id=2), dict(overlap_state=1, predicted_identity=5),
              dict(cluster_id=2), dict(cluster_id=2))
    ts = build_training_set(LABELED, u)
    assert sorted(unl_rows(ts)) == [3, 4]
    d = ts.report["dropped"]
    assert d["unclustered"] == 1 and d["overlap_rejected"] == 1 and d["overlap_discarded"] == 1
    assert sum(d.values()) == 3 and set(d) == set(DROP_REASONS)


def test_overlap_faces_can_join_their_predicted_identity():
    u = faces(dict(overlap_state=1, predicted_identity=9, p_minus=0.25),
              dict(overlap_state=1, predicted_identity=7),  # 7 is not a labeled identity
              dict(overlap_state=1, predicted_identity=5, p_minus=NAN))
    ts = build_training_set(LABELED, u, RetrainConfig(overlap="add_to_predicted"))
    assert unl_rows(ts) == {0: (1, 0.75, "overlap")}
    assert ts.report["dropped"]["overlap_unknown_identity"] == 1 and ts.report["dropped"]["p_minus_missing"] == 1
    hard = build_training_set(LABELED, u, RetrainConfig(overlap="add_to_predicted", soft=False))
    assert unl_rows(hard) == {0: (1, 1.0, "overlap"), 2: (0, 1.0, "overlap")}


def test_assigned_cluster_joins_the_labeled_class_even_when_small():
    u = faces(dict(cluster_id=4, cluster_assigned_identity=5, p_minus=0.5),
              dict(cluster_id=6, p_minus=0.5))  # an unassigned singleton is too small
    ts = build_training_set(LABELED, u)
    assert unl_rows(ts) == {0: (0, 0.5, "pseudo")}
    assert ts.num_classes == 2 and ts.report["dropped"]["cluster_too_small"] == 1
    assert ts.report["clusters"]["joined_labeled"] == 1 and ts.report["clusters"]["too_small"] == 1


def test_pseudo_identities_follow_labeled_classes_per_run_and_cluster():
    """Cluster id 3 of run 2 and of run 1 are different people; classes are ordered by (run, cluster)."""
    u = faces(dict(run_id=2, cluster_id=3), dict(run_id=2, cluster_id=3), dict(run_id=1, cluster_id=3),
              dict(run_id=1, cluster_id=3), dict(run_id=1, cluster_id=8), dict(run_id=1, cluster_id=8))
    ts = build_training_set(LABELED, u)
    got = {r: c for r, (c, _, _) in unl_rows(ts).items()}
    assert got == {2: 2, 3: 2, 4: 3, 5: 3, 0: 4, 1: 4}
    np.testing.assert_array_equal(ts.class_cluster, [[-1, -1], [-1, -1], [1, 3], [1, 8], [2, 3]])
    np.testing.assert_array_equal(ts.class_identity, [5, 9, -1, -1, -1])
    # the same face id in two runs is two faces
    np.testing.assert_array_equal(ts.run_id[5:], [2, 2, 1, 1, 1, 1])


def test_min_cluster_size_counts_faces_left_after_missing_p_minus():
    u = faces(dict(cluster_id=1, p_minus=0.1), dict(cluster_id=1, p_minus=NAN),
              dict(cluster_id=2, p_minus=0.1), dict(cluster_id=2, p_minus=0.3), dict(cluster_id=2, p_minus=NAN))
    ts = build_training_set(LABELED, u)
    assert sorted(unl_rows(ts)) == [2, 3]
    assert ts.report["dropped"] == {**{r: 0 for r in DROP_REASONS}, "p_minus_missing": 2, "cluster_too_small": 1}
    # hard mode ignores p-: both clusters survive, NaN faces included
    assert sorted(unl_rows(build_training_set(LABELED, u, RetrainConfig(soft=False)))) == [0, 1, 2, 3, 4]
    assert sorted(unl_rows(build_training_set(LABELED, u, RetrainConfig(min_cluster_size=3, soft=False)))) == [2, 3, 4]


def test_cap_keeps_the_lowest_p_minus_faces():
    ps = [0.5, 0.05, 0.9, 0.2, 0.05, 0.7]
    u = faces(*[dict(cluster_id=0, p_minus=p) for p in ps])
    ts = build_training_set(LABELED, u, RetrainConfig(max_faces_per_cluster=3))
    assert sorted(unl_rows(ts)) == [1, 3, 4]
    assert ts.report["dropped"]["cluster_capped"] == 3 and ts.report["clusters"]["capped"] == 1
    # confirmed clusters tie at p- = 0: the first face ids win
    uc = faces(*[dict(cluster_id=0, p_minus=p, cluster_confirmed=True) for p in ps])
    assert sorted(unl_rows(build_training_set(LABELED, uc, RetrainConfig(max_faces_per_cluster=2)))) == [0, 1]
    # hard mode: NaN p- is kept but capped last
    un = faces(dict(cluster_id=0, p_minus=NAN), dict(cluster_id=0, p_minus=0.9), dict(cluster_id=0, p_minus=0.8))
    assert sorted(unl_rows(build_training_set(LABELED, un, RetrainConfig(max_faces_per_cluster=2, soft=False)))) == [1, 2]


def test_max_clusters_keeps_the_largest_pseudo_identities():
    u = faces(*[dict(cluster_id=0)] * 2, *[dict(cluster_id=1)] * 4, *[dict(cluster_id=2)] * 3,
              *[dict(cluster_id=3, cluster_assigned_identity=9)] * 2)
    ts = build_training_set(LABELED, u, RetrainConfig(max_clusters=2))
    classes = {r: c for r, (c, _, _) in unl_rows(ts).items()}
    assert sorted(classes) == [2, 3, 4, 5, 6, 7, 8, 9, 10]  # cluster 0 dropped; the assigned one is not counted
    assert classes[2] == 2 and classes[6] == 3 and classes[9] == 1  # classes in cluster order, after labeled
    assert ts.report["dropped"]["max_clusters"] == 2 and ts.report["clusters"]["pseudo_identities"] == 2
    assert build_training_set(LABELED, u, RetrainConfig(max_clusters=0)).report["kept"]["pseudo"] == 2


def test_every_face_is_kept_or_dropped_with_a_reason_on_random_input():
    rng = np.random.default_rng(0)
    n = 400
    cid = rng.integers(-1, 40, n)
    run = rng.integers(0, 3, n)
    conf_c = rng.random((3, 41)) < 0.3
    ass_c = np.where(rng.random((3, 41)) < 0.2, rng.choice([5, 9], (3, 41)), -1)
    p = rng.random(n)
    p[rng.random(n) < 0.1] = np.nan
    u = UnlabeledFaces(run_id=run, face_id=np.arange(n), cluster_id=cid, cluster_confirmed=conf_c[run, cid + 1],
                       cluster_assigned_identity=ass_c[run, cid + 1], overlap_state=rng.integers(-1, 2, n),
                       predicted_identity=rng.choice([5, 9, 11], n), p_minus=p)
    for cfg in (RetrainConfig(), RetrainConfig(overlap="add_to_predicted", gamma=3.0, max_faces_per_cluster=4,
                                               max_clusters=10, min_cluster_size=3), RetrainConfig(soft=False)):
        ts = build_training_set(LABELED, u, cfg)
        rep = ts.report
        assert rep["kept"]["pseudo"] + rep["kept"]["overlap"] + sum(rep["dropped"].values()) == n
        assert ts.class_index.max() < ts.num_classes and ts.class_index.min() >= 0
        assert ((ts.weight >= 0) & (ts.weight <= 1)).all() and np.isfinite(ts.weight).all()
        pseudo = ts.class_identity == -1
        counts = np.bincount(ts.class_index, minlength=ts.num_classes)
        assert (counts[pseudo] >= cfg.min_cluster_size).all()
        if cfg.max_faces_per_cluster:
            unl = ts.source == "pseudo"
            _, per_cluster = np.unique(np.stack([ts.run_id[unl], u.cluster_id[ts.row[unl]]], 1), axis=0,
                                       return_counts=True)
            assert per_cluster.max() <= cfg.max_faces_per_cluster
        m = ts.source != "labeled"
        rows = ts.row[m]
        exp = np.where(u.cluster_confirmed[rows] & (u.overlap_state[rows] == 0), 1.0,
                       (1 - u.p_minus[rows]) ** cfg.gamma if cfg.soft else 1.0)
        np.testing.assert_allclose(ts.weight[m], exp, rtol=1e-6)


@pytest.mark.parametrize("change, match", [
    (dict(cluster_confirmed=np.array([1, 0])), "bool"),
    (dict(p_minus=np.array([0, 1])), "floating"),
    (dict(p_minus=np.array([0.1, 1.5])), r"\[0, 1\]"),
    (dict(cluster_id=np.array([0.0, 1.0])), "integer"),
    (dict(cluster_id=np.array([0, 1, 2])), "rows"),
    (dict(face_id=np.array([[0, 1]])), "1-D"),
    (dict(overlap_state=np.array([0, 2])), "overlap_state"),
    (dict(cluster_id=np.array([-2, 0])), ">= -1"),
    (dict(face_id=np.array([3, 3])), "unique"),
])
def test_bad_unlabeled_arrays_are_refused(change, match):
    base = dict(run_id=np.array([0, 0]), face_id=np.array([0, 1]), cluster_id=np.array([0, 0]),
                cluster_confirmed=np.array([False, False]), cluster_assigned_identity=np.array([-1, -1]),
                overlap_state=np.array([0, 0]), predicted_identity=np.array([-1, -1]), p_minus=np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match=match):
        UnlabeledFaces(**{**base, **change})


def test_inconsistent_inputs_are_refused():
    with pytest.raises(ValueError, match="mixed"):
        build_training_set(LABELED, faces(dict(cluster_id=1, cluster_confirmed=True), dict(cluster_id=1)))
    with pytest.raises(ValueError, match="no labeled faces"):
        build_training_set(LABELED, faces(dict(cluster_id=1, cluster_assigned_identity=7)))
    with pytest.raises(ValueError, match="1-D"):
        build_training_set(LABELED[None], faces())
    with pytest.raises(ValueError, match="integer"):
        build_training_set(LABELED.astype(float), faces())
    with pytest.raises(ValueError, match="UnlabeledFaces"):
        build_training_set(LABELED, {"run_id": []})
    for bad in (dict(gamma=-1.0), dict(gamma=math.inf), dict(overlap="keep"), dict(min_cluster_size=0),
                dict(max_faces_per_cluster=0), dict(max_clusters=-1)):
        with pytest.raises(ValueError):
            RetrainConfig(**bad)
