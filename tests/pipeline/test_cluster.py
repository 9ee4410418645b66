"""cluster(): every method on real faces (AT&T, SFace features), label form, registry, command line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.clustering.methods import DEFAULT_METHOD, METHODS, cluster, relabel
from pipeline.clustering.metrics import evaluate_clustering
from pipeline.features import FeatureSet, l2_normalize, save_features
from tests.conftest import reference_features

@pytest.fixture(scope="session")
def att_features() -> FeatureSet:
    """SFace features of the 400 AT&T faces (embedded once into the cache if absent)."""
    return reference_features("att")


def toy(n_per=10, ids=8, d=32, seed=0):
    rng = np.random.default_rng(seed)
    c = l2_normalize(rng.standard_normal((ids, d)))
    y = np.repeat(np.arange(ids), n_per)
    return l2_normalize(c[y] + 0.05 * rng.standard_normal((y.size, d))), y


def test_relabel():
    out = relabel(np.array([5, 5, -1, 2, -1, 5]))
    assert out.dtype == np.int64
    assert out.tolist() == [0, 0, 1, 2, 3, 0]


@pytest.mark.parametrize("method", ["infomap", "cc", "hac", "dbscan", "kmeans"])
def test_methods_on_separable_toy_data(method):
    x, y = toy()
    params = {"n_clusters": 8} if method == "kmeans" else {}
    labels = cluster(x, method, **params)
    assert labels.dtype == np.int64 and labels.shape == y.shape
    assert set(labels.tolist()) == set(range(labels.max() + 1))
    assert evaluate_clustering(y, labels)["pairwise_f"] > 0.95


@pytest.mark.parametrize(
    "method, params, min_bcubed",
    [
        ("infomap", {}, 0.9),
        ("cc", {}, 0.85),
        ("hac", {}, 0.9),
        ("dbscan", {}, 0.85),
        ("kmeans", {"n_clusters": 40}, 0.7),
    ],
)
def test_methods_on_real_faces(att_features, method, params, min_bcubed):
    ids, _ = att_features.label_ids()
    labels = cluster(att_features.embeddings, method, **params)
    r = evaluate_clustering(ids, labels)
    assert r["bcubed_f"] > min_bcubed, r
    # and far better than putting everyone alone or together
    assert r["bcubed_f"] > evaluate_clustering(ids, np.arange(ids.size))["bcubed_f"] + 0.2


@pytest.mark.slow
def test_gcnd_end_to_end_on_real_faces(att_features):
    from pipeline.clustering.gcn import GcnConfig, train_gcn
    from pipeline.clustering.proposals import ProposalConfig

    ids, _ = att_features.label_ids()
    train = ids < 20
    cfg = GcnConfig(in_dim=att_features.dim, hidden=(32, 32), k=10, epochs=8,
                    proposals=ProposalConfig(thresholds=(0.35, 0.5), max_size=30, levels=1))
    model = train_gcn(att_features.embeddings[train], ids[train], cfg)
    timings = {}
    labels = cluster(att_features.embeddings[~train], "gcn-d", model=model, timings=timings)
    r = evaluate_clustering(ids[~train], labels)
    assert r["bcubed_f"] > 0.8, r
    assert {"knn", "proposals", "gcn", "deoverlap"} <= set(timings)


def test_registry_and_errors():
    assert DEFAULT_METHOD in METHODS
    assert {"gcn-d", "infomap", "hac", "dbscan", "kmeans"} <= set(METHODS)
    x, _ = toy()
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster(x, "spectral")
    with pytest.raises(ValueError, match="needs a trained model"):
        cluster(x, "gcn-d")
    with pytest.raises(ValueError, match="max_n"):
        cluster(x, "hac", max_n=10)
    with pytest.raises(ValueError, match="L2-normalised"):
        cluster(x * 2, "cc")
    with pytest.raises(ValueError, match="no setting cache_dir"):
        cluster(x, "hac", cache_dir="/tmp")


def test_isolated_faces_become_singletons():
    x, _ = toy()
    labels = cluster(x, "infomap", threshold=0.9999)
    assert labels.max() + 1 == x.shape[0]


def test_progress_is_reported():
    x, _ = toy()
    seen = []
    cluster(x, "infomap", progress=lambda c, t, **kw: seen.append((c, t, kw.get("stage"))))
    assert ("knn" in {s for _, _, s in seen}) and ("infomap" in {s for _, _, s in seen})


def test_command_line(att_features, tmp_path, capsys):
    from pipeline.__main__ import main
    from pipeline.features import load_labels

    feats = tmp_path / "att.npz"
    save_features(feats, att_features)
    assert main(["knn", str(feats), "--k", "10", "--out", str(tmp_path / "g.npz")]) == 0
    assert main(["cluster", str(feats), "--out", str(tmp_path / "l.npz"), "--graph", str(tmp_path / "g.npz")]) == 0
    labels = load_labels(tmp_path / "l.npz")
    assert labels.dtype == np.int64 and labels.shape == (len(att_features),)
    assert main(["cluster", str(feats), "--method", "hac", "--param", "distance=0.5", "--out", str(tmp_path / "h.npz")]) == 0
    capsys.readouterr()
    assert main(["evaluate-clustering", str(feats), str(tmp_path / "l.npz"), "--json", str(tmp_path / "m.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "m.json").read_text())
    assert printed["bcubed_f"] > 0.9
    assert main(["train-gcn", str(feats), "--out", str(tmp_path / "m.pt"), "--epochs", "1", "--k", "10",
                 "--thresholds", "0.5", "--levels", "1", "--max-size", "30"]) == 0
    assert main(["cluster", str(feats), "--method", "gcn-d", "--model", str(tmp_path / "m.pt"),
                 "--out", str(tmp_path / "gl.npz")]) == 0
    assert load_labels(tmp_path / "gl.npz").shape == (len(att_features),)
    # errors: exit 2 with a message
    assert main(["cluster", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x.npz")]) == 2
    assert main(["cluster", str(feats), "--param", "oops", "--out", str(tmp_path / "x.npz")]) == 2
    assert main(["cluster", str(feats), "--param", "treshold=0.5", "--out", str(tmp_path / "x.npz")]) == 2
    assert "no setting treshold" in capsys.readouterr().err
    unlabeled = tmp_path / "u.npz"
    save_features(unlabeled, FeatureSet(att_features.embeddings, att_features.paths))
    assert main(["evaluate-clustering", str(unlabeled), str(tmp_path / "l.npz")]) == 2
    assert "no labels" in capsys.readouterr().err
