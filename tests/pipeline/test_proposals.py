"""Cluster proposals: components at thresholds, splitting of big components, two levels."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.features import l2_normalize
from pipeline.clustering.knn import KnnGraph, build_knn
from pipeline.clustering.proposals import ProposalConfig, Proposals, generate_proposals, split_components


def graph_from_edges(n: int, edges: list[tuple[int, int, float]], k: int = 4) -> KnnGraph:
    idx = np.full((n, k), -1, np.int64)
    sims = np.full((n, k), -np.inf, np.float32)
    fill = np.zeros(n, int)
    for a, b, s in sorted(edges, key=lambda e: -e[2]):
        for u, v in ((a, b), (b, a)):
            idx[u, fill[u]] = v
            sims[u, fill[u]] = s
            fill[u] += 1
    return KnnGraph(idx, sims)


# two triangles (0,1,2) strong, (3,4,5) medium, joined by a weak edge 2-3; node 6 isolated
EDGES = [(0, 1, 0.9), (1, 2, 0.9), (0, 2, 0.9), (3, 4, 0.7), (4, 5, 0.7), (3, 5, 0.7), (2, 3, 0.5)]


def as_sets(groups) -> set[frozenset]:
    return {frozenset(int(i) for i in g) for g in groups}


def test_split_components_thresholds():
    adj = graph_from_edges(7, EDGES).to_csr()
    assert as_sets(split_components(adj, 0.4, 100, 0.1)) == {frozenset(range(6)), frozenset({6})}
    assert as_sets(split_components(adj, 0.6, 100, 0.1)) == {frozenset({0, 1, 2}), frozenset({3, 4, 5}), frozenset({6})}
    assert as_sets(split_components(adj, 0.8, 100, 0.1)) == {
        frozenset({0, 1, 2}), frozenset({3}), frozenset({4}), frozenset({5}), frozenset({6})}


def test_big_component_split_at_higher_threshold():
    adj = graph_from_edges(7, EDGES).to_csr()
    # at 0.4 the 6-node component exceeds max_size 4: re-split at 0.5 (still 6), then 0.6 -> two triangles
    got = as_sets(split_components(adj, 0.4, 4, 0.1))
    assert got == {frozenset({0, 1, 2}), frozenset({3, 4, 5}), frozenset({6})}


def test_split_with_weights_counts_faces():
    adj = graph_from_edges(7, EDGES).to_csr()
    w = np.array([1, 1, 1, 1, 1, 1, 1])
    w2 = w.copy()
    w2[0] = 10  # node 0 stands for 10 faces: its triangle alone is too heavy for max 11 -> split further
    assert frozenset({0, 1, 2}) in as_sets(split_components(adj, 0.6, 11, 0.1, weights=w))
    assert frozenset({0, 1, 2}) in as_sets(split_components(adj, 0.6, 12, 0.1, weights=w2))
    assert frozenset({0, 1, 2}) not in as_sets(split_components(adj, 0.6, 11, 0.1, weights=w2))


def test_unsplittable_component_kept_whole():
    adj = sp.csr_matrix(np.array([[0, 1.0, 1.0], [1.0, 0, 1.0], [1.0, 1.0, 0]], np.float32))
    assert as_sets(split_components(adj, 0.5, 2, 0.25)) == {frozenset({0, 1, 2})}


def test_generate_level1_multi_threshold_dedup():
    g = graph_from_edges(7, EDGES)
    p = generate_proposals(g, ProposalConfig(thresholds=(0.4, 0.6, 0.8), max_size=100, levels=1))
    assert as_sets(p[i] for i in range(len(p))) == {frozenset(range(6)), frozenset({0, 1, 2}), frozenset({3, 4, 5})}
    assert set(p.level.tolist()) == {1}
    assert np.all(p.sizes >= 2)
    # every proposal's members sorted
    assert all(np.all(np.diff(p[i]) > 0) for i in range(len(p)))


def test_level2_merges_super_vertices():
    # a_i = e0 + .3 e1 + .6 e_(2+i), b_i = e0 - .3 e1 + .6 e_(7+i): within-group cos .752, across .628,
    # but the two groups' mean features have cos .783 -> level 1 at 0.7 keeps them apart, level 2 joins
    eye = np.eye(16, dtype=np.float32)
    a = np.stack([eye[0] + 0.3 * eye[1] + 0.6 * eye[2 + i] for i in range(5)])
    b = np.stack([eye[0] - 0.3 * eye[1] + 0.6 * eye[7 + i] for i in range(5)])
    x = l2_normalize(np.vstack([a, b]))
    assert float((x[:5] @ x[5:].T).max()) < 0.7 < float(l2_normalize(x[:5].mean(0)) @ l2_normalize(x[5:].mean(0)))
    g = build_knn(x, 9, "flat")
    one = generate_proposals(g, ProposalConfig(thresholds=(0.7,), levels=1, max_size=20))
    assert as_sets(one[i] for i in range(len(one))) == {frozenset(range(5)), frozenset(range(5, 10))}
    two = generate_proposals(g, ProposalConfig(thresholds=(0.7,), levels=2, max_size=20), x)
    assert as_sets(two[i] for i in range(len(two))) == {frozenset(range(5)), frozenset(range(5, 10)), frozenset(range(10))}
    assert two.level.tolist() == [1, 1, 2]
    # level 2 respects level2_max_size in faces: 10 faces > 9 -> no merged proposal
    capped = generate_proposals(g, ProposalConfig(thresholds=(0.7,), levels=2, max_size=9, level2_max_size=9), x)
    assert len(capped) == 2


def test_proposals_container_checks():
    with pytest.raises(ValueError):
        Proposals(np.array([0, 1, 2]), np.array([0, 2]))
    p = Proposals.from_groups([np.array([0, 1]), np.array([2, 3, 4])])
    assert len(p) == 2 and p.sizes.tolist() == [2, 3] and p.owner().tolist() == [0, 0, 1, 1, 1]


@pytest.mark.parametrize("kw", [{"thresholds": ()}, {"max_size": 1}, {"step": 0}, {"levels": 3}, {"thresholds": (2.0,)}])
def test_bad_config_raises(kw):
    with pytest.raises(ValueError):
        ProposalConfig(**kw)


def test_level2_needs_embeddings():
    with pytest.raises(ValueError, match="embeddings"):
        generate_proposals(graph_from_edges(7, EDGES), ProposalConfig(levels=2))


def test_real_faces_proposals_mostly_pure():
    from tests.conftest import reference_features
    from pipeline.clustering.gcn import proposal_targets

    fs = reference_features("glint")
    ids, _ = fs.label_ids()
    g = build_knn(fs.embeddings, 20, "flat")
    p = generate_proposals(g, ProposalConfig(thresholds=(0.5, 0.6), max_size=60), fs.embeddings)
    iou, iop = proposal_targets(p, ids)
    assert len(p) > 24 and p.sizes.max() <= 60
    assert np.median(iop) == 1.0 and iop.mean() > 0.9
