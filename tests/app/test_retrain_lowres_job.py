"""The retraining job trains on low-resolution copies of the labeled faces when ``lowres_copies`` is on (the
recipe's default, chosen on bench/retrain_domain.py's validation people), and on the training set alone when
it is off: the job's own training step, with the training itself replaced by a recorder."""
from __future__ import annotations

import uuid
from types import SimpleNamespace

import numpy as np
import pytest

from facecurate.recognition.models import RecognizerVersion
from facecurate.recognition.services import retrain
from pipeline.retraining.lowres import COPIES
from pipeline.retraining.recipe import DEFAULT_RECIPE
from tests.app.test_retrain_soft_needs_p import _gathered


def _train_inputs(monkeypatch, settings, tmp_path, options: dict) -> tuple[int, dict]:
    settings.ARTIFACT_ROOT = tmp_path
    seen: dict = {}
    monkeypatch.setattr("facecurate.recognition.services.embeddings.load_crops",
                        lambda ids: np.full((len(ids), 112, 112, 3), 128, np.uint8))
    monkeypatch.setattr("pipeline.recognition.training.train_on_crops",
                        lambda cfg, crops, labels, weights=None, **kw: seen.update(crops=crops, labels=labels, w=weights))
    opts = retrain.check_options(options)
    ts, face_ids, _ = retrain.training_set(_gathered(0.2), opts)
    ctx = SimpleNamespace(job=SimpleNamespace(pk=uuid.uuid4()), progress=lambda *a, **k: None,
                          check_cancel=lambda: None)
    _, training = retrain._train(ctx, RecognizerVersion(kind="onnx"), ts, face_ids, opts, "digest")
    assert len(seen["crops"]) == len(seen["labels"]) == len(seen["w"])
    return int((ts.source == "labeled").sum()), {**seen, "n": len(ts), "training": training}


@pytest.mark.parametrize("on", [True, False])
def test_job_trains_on_lowres_copies_of_labeled_faces_only_when_asked(monkeypatch, settings, tmp_path, on):
    labeled, seen = _train_inputs(monkeypatch, settings, tmp_path, {"lowres_copies": on})
    extra = COPIES * labeled if on else 0
    assert labeled == 6 and len(seen["labels"]) == seen["n"] + extra
    assert seen["training"]["lowres_copies"] == extra
    assert all(k.startswith("identity-") for k in seen["labels"][seen["n"]:])


def test_the_default_follows_the_recipe(monkeypatch, settings, tmp_path):
    assert retrain.DEFAULTS["lowres_copies"] is DEFAULT_RECIPE.lowres_copies
    labeled, seen = _train_inputs(monkeypatch, settings, tmp_path, {})
    assert len(seen["labels"]) == seen["n"] + (COPIES * labeled if DEFAULT_RECIPE.lowres_copies else 0)


def test_lowres_copies_must_be_a_bool():
    with pytest.raises(retrain.RetrainRequestError, match="lowres_copies"):
        retrain.check_options({"lowres_copies": "yes"})
