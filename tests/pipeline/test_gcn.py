"""GCN-D: true IoU/IoP targets, batched block-diagonal graphs, de-overlap, checkpoints, learning on real faces."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from pipeline.features import l2_normalize
from pipeline.clustering.gcn import GcnConfig, GcnModel, GCND, deoverlap, make_batch, predict, proposal_targets, train_gcn
from pipeline.clustering.knn import build_knn
from pipeline.clustering.proposals import ProposalConfig, Proposals, generate_proposals

def test_proposal_targets_hand_example():
    labels = np.array([0, 0, 0, 1, 1, 2])  # class sizes 3, 2, 1
    p = Proposals.from_groups([np.array([0, 1]), np.array([0, 1, 2, 3]), np.array([3, 4, 5]), np.array([0, 1, 2])])
    iou, iop = proposal_targets(p, labels)
    # [0,1]: class 0, 2 of 2 -> IoP 1, IoU 2/3; [0..3]: class 0, 3 of 4 -> IoP .75, IoU 3/4
    # [3,4,5]: class 1, 2 of 3 -> IoP 2/3, IoU 2/3; [0,1,2]: exact -> 1, 1
    np.testing.assert_allclose(iop, [1, 0.75, 2 / 3, 1], rtol=1e-6)
    np.testing.assert_allclose(iou, [2 / 3, 0.75, 2 / 3, 1], rtol=1e-6)


def _toy(n=60, d=16, seed=0):
    rng = np.random.default_rng(seed)
    c = l2_normalize(rng.standard_normal((6, d)))
    y = np.repeat(np.arange(6), n // 6)
    x = l2_normalize(c[y] + 0.25 * rng.standard_normal((n, d)))
    return x, y


def test_make_batch_block_diagonal_and_normalised():
    x, _ = _toy()
    g = build_knn(x, 8, "flat")
    p = Proposals.from_groups([np.arange(0, 10), np.arange(5, 20), np.array([3, 40, 41])])
    b = make_batch(x, g, p, np.array([0, 1, 2]))
    assert b.x.shape == (28, 19) and b.num_graphs == 3
    assert b.batch.tolist() == [0] * 10 + [1] * 15 + [2] * 3
    dense = b.adj.to_dense().numpy()
    np.testing.assert_allclose(dense.sum(1), 1.0, rtol=1e-5)
    assert np.all(np.diag(dense) > 0)
    owner = b.batch.numpy()
    rows, cols = np.nonzero(dense)
    assert np.all(owner[rows] == owner[cols])  # no edge between proposals
    # node features are centred per proposal
    for i in range(3):
        np.testing.assert_allclose(b.x[b.batch == i, :16].mean(0).numpy(), 0.0, atol=1e-5)
    # proposal 0's edges are exactly the kNN edges among its members (symmetrised) plus self loops
    m = np.arange(10)
    expect = np.zeros((10, 10), bool)
    for i in m:
        for j in g.indices[i]:
            if j in m:
                expect[i, j] = expect[j, i] = True
    np.fill_diagonal(expect, True)
    np.testing.assert_array_equal(dense[:10, :10] > 0, expect)


def test_deoverlap_hand_example():
    p = Proposals.from_groups([np.array([0, 1, 2]), np.array([2, 3]), np.array([4, 5]), np.array([3, 4])])
    labels = deoverlap(p, np.array([0.9, 0.8, 0.1, 0.95]), 7)
    # order: [3,4] -> A; [0,1,2] -> B; [2,3]: both taken; [4,5]: 5 free -> C; 6 singleton
    assert labels.dtype == np.int64 and labels.shape == (7,)
    assert labels[3] == labels[4] and labels[0] == labels[1] == labels[2]
    assert len({labels[3], labels[0], labels[5], labels[6]}) == 4
    assert sorted(set(labels.tolist())) == list(range(4))
    only_good = deoverlap(p, np.array([0.9, 0.8, 0.1, 0.95]), 7, min_score=0.5)
    assert only_good[5] != only_good[4] and len(set(only_good.tolist())) == 4
    with pytest.raises(ValueError, match="scores"):
        deoverlap(p, np.ones(3), 7)
    with pytest.raises(ValueError, match="face indices"):
        deoverlap(p, np.ones(4), 5)


def test_model_outputs_and_gradients_flow():
    x, _ = _toy()
    g = build_knn(x, 8, "flat")
    p = generate_proposals(g, ProposalConfig(thresholds=(0.3, 0.5), levels=1, max_size=30))
    net = GCND(16, (8, 8))
    b = make_batch(x, g, p, np.arange(len(p)))
    out = net(b.x, b.adj, b.batch, b.num_graphs)
    assert out.shape == (len(p), 2) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(prm.grad is not None for prm in net.parameters())


def test_checkpoint_roundtrip_and_config(tmp_path):
    x, y = _toy()
    cfg = GcnConfig(in_dim=16, hidden=(8, 8), k=8, epochs=2,
                    proposals=ProposalConfig(thresholds=(0.3, 0.5), max_size=30, levels=1))
    model = train_gcn(x, y, cfg)
    path = model.save(tmp_path / "m.pt")
    again = GcnModel.load(path)
    assert again.config.to_dict() == cfg.to_dict()
    g = build_knn(x, 8, "flat")
    p = generate_proposals(g, cfg.proposals, x)
    a = predict(model, x, g, p)
    b = predict(again, x, g, p, max_nodes=7)  # other batching, same answer
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)
    np.testing.assert_allclose(a[1], b[1], atol=1e-5)
    torch.save({"something": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a GCN-D checkpoint"):
        GcnModel.load(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        GcnModel.load(tmp_path / "none.pt")
    with pytest.raises(ValueError, match="expects 16-d"):
        predict(model, l2_normalize(np.ones((5, 4))), g, p)


def test_train_rejects_bad_labels():
    x, y = _toy()
    with pytest.raises(ValueError, match="labels must have shape"):
        train_gcn(x, y[:-1])


@pytest.mark.slow
def test_gcn_learns_proposal_quality_on_real_faces():
    """Train on half the LFW identities, predict IoU of held-out identities' proposals: beat the
    constant predictor (training mean) and rank proposals well."""
    from tests.conftest import reference_features

    torch.manual_seed(0)
    fs = reference_features("lfw")
    ids, _ = fs.label_ids()
    rng = np.random.default_rng(0)
    # a small split of identities with >= 2 images keeps it quick
    multi = np.flatnonzero(np.bincount(ids) >= 2)
    chosen = rng.permutation(multi)[:600]
    tr_cls, te_cls = chosen[:300], chosen[300:]
    tr, te = np.isin(ids, tr_cls), np.isin(ids, te_cls)
    cfg = GcnConfig(in_dim=fs.dim, k=20, epochs=10,
                    proposals=ProposalConfig(thresholds=(0.3, 0.4, 0.5), max_size=100, levels=2))
    model = train_gcn(fs.embeddings[tr], ids[tr], cfg)
    g = build_knn(fs.embeddings[te], 20, "flat")
    p = generate_proposals(g, cfg.proposals, fs.embeddings[te])
    true_iou, _ = proposal_targets(p, ids[te])
    pred_iou, _ = predict(model, fs.embeddings[te], g, p)
    g_tr = build_knn(fs.embeddings[tr], 20, "flat")
    train_iou, _ = proposal_targets(generate_proposals(g_tr, cfg.proposals, fs.embeddings[tr]), ids[tr])
    mse_model = float(np.mean((pred_iou - true_iou) ** 2))
    mse_const = float(np.mean((train_iou.mean() - true_iou) ** 2))
    assert 0.0 <= pred_iou.min() and pred_iou.max() <= 1.0
    assert mse_model < 0.7 * mse_const, (mse_model, mse_const)
    assert np.corrcoef(pred_iou, true_iou)[0, 1] > 0.5
