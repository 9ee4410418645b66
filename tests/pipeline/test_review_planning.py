"""pipeline.review: the merge model fits and calibrates, the expected-gain arithmetic, candidate pairs,
and the greedy oracle (issue 16)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.review import gain, merge_model
from pipeline.review.candidates import FEATURES, cluster_pairs, face_placements
from pipeline.review.oracle import greedy_oracle


def test_logistic_fit_recovers_a_separable_rule_and_chooses_l2_on_the_inner_split():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, len(FEATURES)))
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=600) > 0).astype(float)
    inner = np.arange(600) % 3 == 0
    model, losses = merge_model.choose(x, y, inner)
    assert set(losses) == {0.01, 0.1, 1.0, 10.0, 100.0} and model["l2"] == min(losses, key=losses.get)
    p = merge_model.predict(model, x)
    assert ((p > 0.5) == (y > 0.5)).mean() > 0.9
    # calibrated: in a bin of predictions around 0.8, about 80 % are positive
    mid = (p > 0.6) & (p < 0.95)
    assert abs(y[mid].mean() - p[mid].mean()) < 0.1


def test_shipped_model_reads_the_features_this_code_makes():
    m = merge_model.shipped()
    assert m["features"] == list(FEATURES) and len(m["coef"]) == len(FEATURES) + 1
    assert 0 < merge_model.probability(np.zeros((1, len(FEATURES))))[0] < 1


def test_gains():
    assert gain.merge_gain(0.5, 10, 4) == pytest.approx(20.0)
    fixed, actions = gain.cleanup_gain([1.0, 0.0, 0.0, 0.0])
    assert fixed == pytest.approx(3.0) and actions == pytest.approx(1.0)  # one stray: 3 wrong pairs, one decision
    fixed, actions = gain.cleanup_gain([0.0, 0.0])
    assert fixed == 0.0 and actions == 1.0


def _blobs(people=5, per=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 32))
    emb = np.concatenate([c + 0.3 * rng.normal(size=(per, 32)) for c in centres]).astype(np.float32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), np.repeat(np.arange(people), per)


def test_candidate_pairs_link_a_split_person_closest():
    emb, truth = _blobs()
    labels = truth.copy()
    labels[:3] = 5  # person 0 split in two
    pairs, feats = cluster_pairs(emb, labels, np.zeros(len(labels)), k=3)
    assert feats.shape == (len(pairs), len(FEATURES)) and (pairs[:, 0] < pairs[:, 1]).all()
    best = pairs[np.argmax(feats[:, 0])]
    assert set(best.tolist()) == {0, 5}
    place, pf = face_placements(emb, labels, k=2)
    assert place.shape == (len(emb), 2) and (place[:3, 0] == 0).all()  # the split-off faces' best other cluster


def test_rank_features_read_where_each_cluster_stands_among_the_others_nearest():
    from pipeline.review.candidates import RANK_CAP, centroids, neighbour_ranks, pair_features

    emb, truth = _blobs(people=14, per=4)
    labels = truth.copy()
    labels[:2] = 14  # person 0 split in two: the halves are each other's nearest
    pairs, feats = cluster_pairs(emb, labels, np.zeros(len(labels)), k=3)
    far, near = FEATURES.index("rank_far"), FEATURES.index("rank_near")
    split = feats[[set(p) == {0, 14} for p in pairs.tolist()]][0]
    assert split[far] == split[near] == 0.0  # rank 1 both ways
    assert (feats[:, far] >= feats[:, near]).all() and feats[:, far].max() <= np.log(RANK_CAP)
    # the service scores pairs again with ranks on the clusters as they are now: the same numbers
    cent = centroids(emb, labels, 15)
    members = [np.flatnonzero(labels == c) for c in range(15)]
    again = pair_features(emb, members, np.zeros(15), 0, 14, float(cent[0] @ cent[14]), np.zeros(len(labels)),
                          neighbour_ranks(cent, [0, 14]))
    assert np.allclose(again, split, atol=1e-5)
    # without ranks, neither is among the other's nearest
    assert pair_features(emb, members, np.zeros(15), 0, 14, 0.5)[far] == np.log(RANK_CAP)
    # a face against a cluster: its rank among the face's clusters and where it would stand among the cluster's
    place, pf = face_placements(emb, labels, k=2)
    assert place[3, 0] == 14 and pf[3, 0, far] == pf[3, 0, near] == 0.0  # the other half of its person, mutual
    assert (pf[:, 1, far] >= np.log(2)).all()  # a face's second cluster is second at best


def test_a_model_reads_only_the_features_it_was_fitted_on():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, len(FEATURES)))
    y = (x[:, 0] > 0).astype(float)
    model = merge_model.fit(x, y, use=("centroid_cos", "best_link"))
    assert model["features"] == ["centroid_cos", "best_link"] and len(model["coef"]) == 3
    noisy = x.copy()
    noisy[:, 2:] = rng.normal(size=(300, len(FEATURES) - 2)) * 100  # features it does not read
    assert np.allclose(merge_model.predict(model, x), merge_model.predict(model, noisy))
    with pytest.raises(ValueError):
        merge_model.fit(x, y, use=("centroid_cos", "shoe_size"))


def test_face_placements_with_fewer_clusters_than_offers():
    emb, truth = _blobs(people=3, per=4)
    place, pf = face_placements(emb, truth, k=3)  # 3 clusters: at most 2 others per face
    assert place.shape == (len(emb), 3) and (place[:, 2] == -1).all() and (place[:, :2] >= 0).all()


def test_oracle_merges_splits_and_cleans_outliers_to_perfect():
    truth = np.repeat(np.arange(4), 6)
    labels = truth.copy()
    labels[:3] = 4  # split
    labels[6] = 2  # an outlier of person 1 in person 2's cluster
    labels[20] = -1  # unclustered
    curve = greedy_oracle(truth, labels, max_actions=10)
    assert curve[0] < 1.0 and curve[-1] == pytest.approx(1.0)
    assert len(curve) - 1 == 4  # merge the split, reject the outlier, place it, place the unclustered face
    assert all(b >= a for a, b in zip(curve, curve[1:]))


def test_the_oracle_with_the_persons_split_keeps_a_persons_faces_together():
    truth = np.repeat(np.arange(3), 6)
    labels = truth.copy()
    labels[6:10] = 0  # four faces of person 1 in person 0's cluster
    old = greedy_oracle(truth, labels, max_actions=20)
    new = greedy_oracle(truth, labels, max_actions=20, split=True)
    assert old[-1] == pytest.approx(1.0) and new[-1] == pytest.approx(1.0)
    assert len(new) - 1 == 2  # split the four off, merge them with the rest of person 1
    assert len(old) - 1 == 5  # reject the four as singletons, then merge each back
    mixed = np.array([0] * 6 + [1] * 2 + [2] * 2)
    two = greedy_oracle(mixed, np.zeros(10, np.int64), max_actions=20, split=True)
    assert len(two) - 1 == 2 and two[-1] == pytest.approx(1.0)  # one split per other person


def test_a_merge_group_shows_a_cluster_with_its_likely_partners_for_one_action():
    sizes = {0: 10, 1: 6, 2: 4, 3: 1, 4: 8}
    pairs = [(0, 1, 0.9), (0, 2, 0.5), (0, 3, 0.01), (2, 4, 0.3)]
    groups = gain.merge_groups(pairs, sizes, p_min=0.05)
    top_gain, anchor, partners = groups[0]
    assert anchor == 0 and [b for b, _ in partners] == [1, 2]  # most likely first, the negligible one dropped
    assert top_gain == pytest.approx(10 * (0.9 * 6 + 0.5 * 4))
    assert [g for g, _, _ in groups] == sorted((g for g, _, _ in groups), reverse=True)
    assert {a for _, a, _ in groups} == {0, 1, 2, 4}  # cluster 3 is only in a pair under the floor
    assert len(gain.merge_groups(pairs, sizes, p_min=0.0, max_partners=1)[0][2]) == 1


def test_probability_floor_drops_at_most_the_allowed_share_of_true_merges():
    q = np.array([0.01, 0.02, 0.1, 0.3, 0.9])
    y = np.array([0, 1, 0, 1, 1])
    w = np.array([5.0, 1.0, 50.0, 30.0, 68.0])  # true merges weigh 1 + 30 + 68 = 99
    assert gain.probability_floor(q, y, w, lost=0.011) == pytest.approx(0.3)  # drops 1 of 99 pairs (and a wrong one)
    assert gain.probability_floor(q, y, w, lost=0.0) == pytest.approx(0.02)
    assert gain.probability_floor(q, np.zeros(5), w) == 0.0


def test_reliability_table_bins_predictions_and_observed_rates():
    p = np.array([0.02, 0.03, 0.55, 0.6, 0.95, 1.0])
    y = np.array([0, 0, 1, 0, 1, 1])
    table = merge_model.reliability(y, p)
    assert sum(r["pairs"] for r in table) == 6
    mid = next(r for r in table if r["bin"] == [0.5, 0.65])
    assert mid["pairs"] == 2 and mid["observed"] == pytest.approx(0.5) and mid["mean_p"] == pytest.approx(0.575)
    assert table[-1]["pairs"] == 2 and table[-1]["observed"] == 1.0


def test_candidates_for_some_clusters_or_faces_only_and_empty_clusters_skipped():
    emb, truth = _blobs()
    labels = truth.copy()
    labels[:3] = 5  # person 0 split in two
    pairs, feats = cluster_pairs(emb, labels, np.zeros(len(labels)), k=3, only=[5])
    assert len(pairs) == 3 and all(5 in p for p in pairs.tolist()) and feats.shape == (3, len(FEATURES))
    labels[labels == 4] = -1  # person 4 rejected: cluster 4 is empty now
    place, _ = face_placements(emb, labels, k=2, rows=np.flatnonzero(labels < 0))
    assert (place[labels >= 0] == -1).all()  # only the rows asked for
    assert (place[labels < 0] >= 0).all() and not (place == 4).any()  # an empty cluster is never offered


def test_a_clean_up_is_offered_only_where_a_wrong_pair_is_expected():
    fixed, _ = gain.cleanup_gain([0.01] * 5)
    assert fixed < 1 and not gain.worth_cleaning(fixed)
    assert gain.worth_cleaning(gain.cleanup_gain([0.9] + [0.01] * 4)[0])


def test_the_merge_model_does_not_extrapolate_beyond_the_sizes_it_was_fitted_on():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURES)))
    y = (x[:, 0] - x[:, 4] + rng.normal(scale=0.5, size=400) > 0).astype(float)
    model = merge_model.fit(x, y)
    edge, far = x[:1].copy(), x[:1].copy()
    edge[0, 4], far[0, 4] = x[:, 4].max(), x[:, 4].max() + 50  # a cluster far larger than any seen
    assert merge_model.predict(model, far)[0] == merge_model.predict(model, edge)[0]
    edge[0, 0], far[0, 0] = x[:, 0].max(), x[:, 0].max() + 1  # more alike than any pair seen: still more likely
    assert merge_model.predict(model, far)[0] > merge_model.predict(model, edge)[0]
    assert model["lo"] == x.min(0).tolist() and model["hi"] == x.max(0).tolist()


def test_the_stray_model_recalibrates_p_minus_and_leaves_placed_faces_and_singletons_at_zero():
    from pipeline.review import stray_model

    rng = np.random.default_rng(2)
    p = rng.uniform(0.001, 0.999, 4000)
    n = rng.integers(2, 40, 4000)
    stray = (rng.uniform(size=4000) < p / 2).astype(float)  # p- overstates: half of it
    model = stray_model.fit(p, n, stray)
    q = stray_model.predict(model, p, n)
    mid = (p > 0.55) & (p < 0.65)
    assert abs(q[mid].mean() - 0.3) < 0.06 and abs(q.sum() - stray.sum()) < 0.05 * stray.sum()
    assert stray_model.predict(model, np.array([0.0, 0.5]), np.array([5, 1])).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        stray_model.fit(p, n, stray[:10])
    shipped = stray_model.shipped()
    assert shipped["features"] == ["logit_p_minus", "log_size"] and len(shipped["coef"]) == 3
    assert 0 < stray_model.probability(np.array([0.5]), 10)[0] < 1


def test_a_merge_brings_the_clusters_it_moved_toward_into_the_candidates():
    from pipeline.review.candidates import nearest_others, reverse_pairs

    cent = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]], np.float32)
    ids, sims = nearest_others(cent, k=1)  # each one's nearest other
    assert ids[:, 0].tolist() == [2, 2, 1, 1] and sims[0, 0] == pytest.approx(0.6)
    assert (nearest_others(cent, k=5)[0][:, 3:] == -1).all()  # fewer clusters than k
    moved = cent.copy()
    moved[1] = [0.8, 0.6]  # cluster 1 grew by a merge and moved toward cluster 0
    known = np.where(ids == 1, -1, ids)  # cluster 1 changed: counted as it is now, not as it was
    assert reverse_pairs(moved, [1], [0, 2], known, sims, k=1).tolist() == [[0, 1], [2, 1]]  # 0: 0.8 > 0.6
    assert reverse_pairs(moved, [1], [2], known, sims, k=1).tolist() == [[2, 1]]  # only the rows asked for
    assert reverse_pairs(cent, [1], [0], known, sims, k=1).tolist() == []  # had 1 not moved: 0 < 0.6
    with pytest.raises(ValueError):
        reverse_pairs(moved, [1], [0], known[:2], sims[:2])
