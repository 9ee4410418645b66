"""`python -m pipeline separate-overlap` and `python -m pipeline uncertainty` on real AT&T SFace features."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.__main__ import main
from pipeline.overlap.plots import plot_report
from pipeline.features import FeatureSet, load_features, save_features, save_labels
from tests.pipeline.recognizer_data import att_features

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def att_split(tmp_path_factory):
    """labeled.npz: 5 images of 20 identities; unlabeled.npz: their other 5 + all images of 20 unseen identities."""
    fs = att_features()
    ids, names = fs.label_ids()
    rng = np.random.default_rng(0)
    known = set(rng.permutation(len(names))[:20].tolist())
    lab, unl = [], []
    for c in range(len(names)):
        m = np.flatnonzero(ids == c)
        if c in known:
            lab += m[:5].tolist()
            unl += m[5:].tolist()
        else:
            unl += m.tolist()
    d = tmp_path_factory.mktemp("evt_cli")
    save_features(d / "labeled.npz", fs.subset(np.array(lab)))
    save_features(d / "unlabeled.npz", fs.subset(np.array(unl)))
    return d, known, names


def test_separate_overlap_with_prototypes(att_split, capsys):
    d, known, names = att_split
    rc = main(["separate-overlap", str(d / "unlabeled.npz"), "--prototypes", str(d / "labeled.npz"),
               "--out", str(d / "out.npz"), "--report", str(d / "ov.json"), "--plot", str(d / "ov.png")])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["degenerate"] is None
    out = load_features(d / "out.npz")
    for key in ("overlap_state", "overlap_label", "overlap_posterior", "max_logit", "argmax", "overlap_identity"):
        assert out.extra[key].shape == (len(out),)
    state, ident = out.extra["overlap_state"], out.extra["overlap_identity"]
    truth = np.isin(out.labels, names[sorted(known)])
    assert np.mean(state[~truth] == 1) < 0.03 and np.mean(state[truth] == 0) < 0.03
    ov = state == 1
    assert np.mean(ident[ov] == out.labels[ov]) > 0.97 and np.all(ident[~ov] == "")
    report = json.loads((d / "ov.json").read_text())
    assert report["score_source"].startswith("class means") and report["counts"]["overlap"] == int(ov.sum())
    assert (d / "ov.png").read_bytes()[:8] == PNG
    # the written file already holds max_logit/argmax: a second run needs no classifier and agrees
    assert main(["separate-overlap", str(d / "out.npz"), "--out", str(d / "out2.npz")]) == 0
    np.testing.assert_array_equal(load_features(d / "out2.npz").extra["overlap_state"], state)


def test_separate_overlap_errors_clearly_without_scores(att_split, capsys):
    d, _, _ = att_split
    assert main(["separate-overlap", str(d / "labeled.npz"), "--out", str(d / "x.npz")]) == 2
    assert "no 'max_logit'" in capsys.readouterr().err


def test_separate_overlap_degenerate_is_reported(tmp_path, capsys):
    fs = att_features().subset(np.arange(30))
    fs = FeatureSet(fs.embeddings, fs.paths, fs.labels,
                    extra={"max_logit": np.linspace(0.2, 0.9, 30).astype(np.float32), "argmax": np.zeros(30, np.int64)})
    save_features(tmp_path / "few.npz", fs)
    assert main(["separate-overlap", str(tmp_path / "few.npz"), "--out", str(tmp_path / "o.npz"),
                 "--plot", str(tmp_path / "o.png")]) == 0
    assert json.loads(capsys.readouterr().out)["degenerate"] == "too_few"
    assert np.all(load_features(tmp_path / "o.npz").extra["overlap_state"] == -1)
    assert (tmp_path / "o.png").read_bytes()[:8] == PNG


def test_uncertainty_command(tmp_path, capsys):
    fs = att_features()
    ids, _ = fs.label_ids()
    clusters = ids.copy()
    wrong = []
    for c in range(10):  # split 3 faces off each of 10 identities
        clusters[np.flatnonzero(ids == c)[:3]] = 100 + c
        wrong += np.flatnonzero(ids == c)[:3].tolist()
    for c in range(10, 20):  # one outlier each in 10 other clusters
        clusters[np.flatnonzero(ids == c)[0]] = c + 10
        wrong.append(int(np.flatnonzero(ids == c)[0]))
    save_features(tmp_path / "f.npz", fs)
    save_labels(tmp_path / "c.npz", clusters)
    rc = main(["uncertainty", str(tmp_path / "f.npz"), "--clusters", str(tmp_path / "c.npz"), "--out",
               str(tmp_path / "p.npz"), "--plot", str(tmp_path / "u.png"), "--epochs", "0", "--threads", "2"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    with np.load(tmp_path / "p.npz") as z:
        arrays = {k: z[k] for k in z.files}
    for key in ("p_minus", "entropy", "max_logit", "margin", "assigned_margin"):
        assert arrays[key].shape == (len(fs),) and arrays[key].dtype == np.float32
    pm = arrays["p_minus"]
    assert summary["degenerate"] is None and np.isfinite(pm).all()
    assert np.median(pm[wrong]) > np.quantile(pm, 0.8)
    report = json.loads((tmp_path / "p_uncertainty.json").read_text())
    assert report["kind"] == "uncertainty" and "wrong_upper" in report["thresholds"]
    assert (tmp_path / "u.png").read_bytes()[:8] == PNG


def test_uncertainty_command_rejects_misaligned_clusters(tmp_path, capsys):
    fs = att_features()
    save_features(tmp_path / "f.npz", fs)
    save_labels(tmp_path / "c.npz", np.zeros(5, np.int64))
    assert main(["uncertainty", str(tmp_path / "f.npz"), "--clusters", str(tmp_path / "c.npz"),
                 "--out", str(tmp_path / "p.npz")]) == 2
    assert "5 labels" in capsys.readouterr().err


def test_plot_report_rejects_non_reports(tmp_path):
    with pytest.raises(ValueError, match="histogram"):
        plot_report({"kind": "overlap"}, tmp_path / "x.png")


@pytest.mark.slow
def test_separate_overlap_with_a_trained_checkpoint(att_split, capsys):
    torch = pytest.importorskip("torch")
    from pipeline.recognition.training import TrainConfig, train

    torch.set_num_threads(2)
    d, known, names = att_split
    ckpt = train(TrainConfig(backbone="mlp", epochs=3, device="cpu", seed=0), load_features(d / "labeled.npz"),
                 out_path=d / "head.pt")
    assert main(["separate-overlap", str(d / "unlabeled.npz"), "--checkpoint", str(ckpt),
                 "--out", str(d / "ck.npz")]) == 0
    assert json.loads(capsys.readouterr().out)["degenerate"] is None
    out = load_features(d / "ck.npz")
    state = out.extra["overlap_state"]
    truth = np.isin(out.labels, names[sorted(known)])
    assert np.mean(state[~truth] == 1) < 0.05 and np.mean(state[truth] == 0) < 0.05
    ov = state == 1
    assert np.mean(out.extra["overlap_identity"][ov] == out.labels[ov]) > 0.95
    with pytest.raises(SystemExit):
        main(["separate-overlap", str(d / "unlabeled.npz"), "--checkpoint", str(ckpt), "--prototypes", "x.npz",
              "--bogus"])
    assert main(["separate-overlap", str(d / "unlabeled.npz"), "--checkpoint", str(ckpt), "--prototypes",
                 str(d / "labeled.npz")]) == 2
