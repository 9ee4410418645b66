"""``python -m pipeline embed / train / evaluate`` end to end on real att faces."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.__main__ import main
from pipeline.features import load_features, save_features
from pipeline.recognition.checkpoint import load_checkpoint
from tests.pipeline.recognizer_data import att_features, shared_path


@pytest.mark.parametrize("cmd", ["embed", "train", "evaluate"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_embed_a_labeled_folder(tmp_path):
    root = tmp_path / "faces"
    for s in ("s1", "s2"):
        (root / s).mkdir(parents=True)
        for k in (1, 2):
            (root / s / f"{k}.pgm").symlink_to(shared_path("att_faces", s, f"{k}.pgm"))
    assert main(["embed", str(root), "--out", str(tmp_path / "f.npz")]) == 0
    f = load_features(tmp_path / "f.npz")
    assert f.embeddings.shape == (4, 128) and list(f.labels) == ["s1", "s1", "s2", "s2"]
    assert f.embeddings[0] @ f.embeddings[1] > f.embeddings[0] @ f.embeddings[2]


@pytest.mark.slow
def test_train_embed_with_logits_and_evaluate(tmp_path, capsys):
    feats_path = tmp_path / "att.npz"
    save_features(feats_path, att_features())
    ckpt = tmp_path / "head.pt"
    assert main(["train", str(feats_path), "--out", str(ckpt), "--epochs", "3", "--batch-size", "64",
                 "--threads", "1", "--margin", "0.3"]) == 0
    assert load_checkpoint(ckpt)["config"]["margin"] == 0.3
    out = tmp_path / "head_feats.npz"
    assert main(["embed", "--features", str(feats_path), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    f = load_features(out)
    n = len(f)
    assert f.extra["logits"].shape == (n, 40) and f.extra["max_logit"].shape == (n,)
    assert f.extra["argmax"].dtype == np.int64
    np.testing.assert_allclose(f.extra["max_logit"], f.extra["logits"].max(1))
    assert (f.extra["argmax_name"] == f.labels).mean() > 0.95
    np.testing.assert_allclose(f.extra["base_embeddings"], att_features().embeddings)
    rep_dir = tmp_path / "reports"
    assert main(["evaluate", str(feats_path), "--out-dir", str(rep_dir), "--name", "sface"]) == 0
    assert main(["evaluate", str(feats_path), "--checkpoint", str(ckpt), "--out-dir", str(rep_dir), "--name", "head",
                 "--compare", str(rep_dir / "sface.json")]) == 0
    report = json.loads((rep_dir / "head.json").read_text())
    assert report["meta"]["checkpoint"] == str(ckpt) and "identification" in report
    assert (rep_dir / "head_roc.png").is_file()
    assert "compared with sface" in capsys.readouterr().out


def test_errors_exit_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing.npz"), "--out-dir", str(tmp_path)]) == 2
    assert main(["embed", "--out", str(tmp_path / "x.npz")]) == 2
    assert "error:" in capsys.readouterr().err
