"""Evaluation: the LFW protocol, TAR at FAR, identification, reports, compared with brute force."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.evaluation.verification import (
    best_threshold,
    compare_reports,
    evaluate_features,
    identification,
    lfw_verification,
    pair_scores,
    read_lfw_pairs,
    roc_from_scores,
    tar_at_far,
    write_report,
)
from pipeline.features import FeatureSet, l2_normalize
from tests.pipeline.recognizer_data import att_features, lfw_features, shared_path


def _clusters(n_ids=20, per=8, dim=16, noise=0.6, seed=0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    labels = np.repeat(np.arange(n_ids), per)
    emb = l2_normalize(centres[labels] + noise * rng.normal(size=(len(labels), dim)))
    return FeatureSet(emb, np.array([f"x/{i}.jpg" for i in range(len(labels))]), labels.astype(str))


def test_read_lfw_pairs_view2():
    pairs = read_lfw_pairs(shared_path("lfw", "pairs.txt"))
    assert len(pairs) == 6000
    assert pairs[0] == ("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg", True, 0)
    assert sum(p[2] for p in pairs) == 3000
    assert [sum(1 for p in pairs if p[3] == f) for f in range(10)] == [600] * 10
    assert not pairs[300][2] and pairs[300][3] == 0 and pairs[600][3] == 1


def test_best_threshold_matches_brute_force():
    rng = np.random.default_rng(3)
    scores = np.round(rng.uniform(-1, 1, 200), 2)  # ties included
    same = rng.uniform(size=200) < 0.5 + 0.4 * scores
    t, acc = best_threshold(scores, same)
    brute = max(((scores > c) == same).mean() for c in np.concatenate([[-2.0], np.unique(scores)]))
    assert acc == pytest.approx(brute)
    assert ((scores > t) == same).mean() == pytest.approx(acc)


def test_sface_on_lfw_pairs_matches_the_reference():
    r = lfw_verification(lfw_features(), shared_path("lfw", "pairs.txt"))
    assert r["num_pairs"] == 6000 and r["num_missing"] == 0 and len(r["folds"]) == 10
    assert 0.990 <= r["mean"] <= 0.997  # reference 99.43 +- 0.39 with OpenCV's own pipeline
    assert r["std"] == pytest.approx(np.std(r["folds"]))


def test_lfw_protocol_is_chance_for_shuffled_features():
    feats = lfw_features()
    rng = np.random.default_rng(0)
    shuffled = FeatureSet(feats.embeddings[rng.permutation(len(feats))], feats.paths, feats.labels)
    assert lfw_verification(shuffled, shared_path("lfw", "pairs.txt"))["mean"] < 0.6


def test_lfw_missing_faces_raise_unless_allowed():
    feats = lfw_features()
    drop = np.flatnonzero(np.char.find(feats.paths.astype(str), "Abel_Pacheco") < 0)
    with pytest.raises(ValueError, match="missing"):
        lfw_verification(feats.subset(drop), shared_path("lfw", "pairs.txt"))
    r = lfw_verification(feats.subset(drop), shared_path("lfw", "pairs.txt"), allow_missing=True)
    assert r["num_missing"] >= 1 and r["num_pairs"] == 6000 - r["num_missing"]


def test_pair_scores_stream_equals_full_matrix():
    f = _clusters()
    ids = f.labels
    sims = f.embeddings @ f.embeddings.T
    iu = np.triu_indices(len(ids), 1)
    same = ids[iu[0]] == ids[iu[1]]
    gen, top, hist, n_imp = pair_scores(f.embeddings, ids, top_impostors=50, block=7)
    np.testing.assert_allclose(np.sort(gen), np.sort(sims[iu][same]), atol=1e-6)
    np.testing.assert_allclose(top, np.sort(sims[iu][~same])[::-1][:50], atol=1e-6)
    assert n_imp == (~same).sum() == hist.sum()


def test_tar_at_far_matches_brute_force():
    f = _clusters(n_ids=40, per=10, noise=0.9)
    sims = f.embeddings @ f.embeddings.T
    iu = np.triu_indices(len(f), 1)
    same = f.labels[iu[0]] == f.labels[iu[1]]
    gen, imp = sims[iu][same], np.sort(sims[iu][~same])[::-1]
    r = tar_at_far(f, (1e-2, 1e-3))
    for far in (1e-2, 1e-3):
        k = int(np.floor(far * len(imp)))
        thr = imp[k - 1]
        assert (imp > thr).mean() <= far
        assert r["tar"][f"{far:g}"] == pytest.approx((gen > thr).mean())
    assert r["num_genuine"] == same.sum() and r["num_impostor"] == (~same).sum()
    far, tar = np.asarray(r["roc"]["far"]), np.asarray(r["roc"]["tar"])
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= -1e-12)


def test_tar_at_far_too_few_impostors_is_none():
    f = _clusters(n_ids=3, per=3)
    assert tar_at_far(f, (1e-4,))["tar"]["0.0001"] is None


def test_identification_perfect_and_random():
    f = _clusters(noise=0.05)
    r = identification(f, ranks=(1, 5))
    assert r["rank1"] == 1.0 and r["num_identities"] == 20 and r["num_probes"] == 20 * 7
    rng = np.random.default_rng(1)
    noise = FeatureSet(l2_normalize(rng.normal(size=(160, 16))), f.paths, f.labels)
    rnd = identification(noise, ranks=(1, 5))
    assert rnd["rank1"] < 0.25 and rnd["rank5"] >= rnd["rank1"]


def test_identification_matches_brute_force():
    f = _clusters(noise=1.2, seed=5)
    r = identification(f, ranks=(1, 3), gallery_per_id=2, seed=7)
    rng = np.random.default_rng(7)
    ids = np.unique(f.labels, return_inverse=True)[1]
    gal, probes = [], []
    for c in range(ids.max() + 1):
        m = rng.permutation(np.flatnonzero(ids == c))
        t = f.embeddings[m[:2]].mean(0)
        gal.append(t / np.linalg.norm(t))
        probes += [(p, c) for p in m[2:]]
    gal = np.stack(gal)
    sims = [gal @ f.embeddings[p] for p, _ in probes]
    ranks = [1 + int((s > s[c]).sum()) for s, (_, c) in zip(sims, probes)]
    assert r["rank1"] == pytest.approx(np.mean(np.array(ranks) <= 1))
    assert r["rank3"] == pytest.approx(np.mean(np.array(ranks) <= 3))


def test_roc_from_scores_endpoints():
    far, tar = roc_from_scores(np.array([0.9, 0.8, 0.1]), np.array([0.0, 0.2, 0.85, -0.5]))
    assert far[-1] == 1.0 and tar[-1] == 1.0
    assert np.all(np.diff(far) >= 0)


def test_report_on_att_faces_written_and_compared(tmp_path):
    att = att_features()
    rep = evaluate_features(att, name="sface-att")
    assert rep["verification"]["tar"]["0.001"] > 0.9 and rep["identification"]["rank1"] > 0.9
    json_path, png_path = write_report(rep, tmp_path)
    assert json.loads(json_path.read_text())["name"] == "sface-att"
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rng = np.random.default_rng(0)
    worse = FeatureSet(l2_normalize(att.embeddings + 0.15 * rng.normal(size=att.embeddings.shape)), att.paths,
                       att.labels)
    rep2 = evaluate_features(worse, name="noisy")
    cmp = compare_reports(json_path, rep2)
    assert cmp["old"] == "sface-att" and cmp["new"] == "noisy"
    row = cmp["metrics"]["tar@far=0.0001"]
    assert row["delta"] == pytest.approx(row["new"] - row["old"]) and row["delta"] < 0
    assert write_report(rep2, tmp_path, compare_with=[rep])[1].is_file()


def test_evaluate_needs_labels_or_pairs():
    f = _clusters()
    with pytest.raises(ValueError):
        evaluate_features(FeatureSet(f.embeddings, f.paths))
