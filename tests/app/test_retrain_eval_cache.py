"""LFW pairs inside a retraining: crops detected once and cached by file + detector, a fine-tuned SFace
embedded through its trained stages over the frozen trunk's cached activations (same embeddings as the
full network), progress per benchmark that ends at its total. A tiny LFW (real images, 1 fold) in tmp."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.conftest import shared_path

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

PEOPLE = ["Andre_Agassi", "Bill_Gates", "Kofi_Annan", "John_Ashcroft"]


@pytest.fixture
def tiny_lfw(settings, tmp_path):
    src = shared_path("lfw", "images_deepfunneled")
    root = tmp_path / "shared" / "lfw"
    for p in PEOPLE:
        (root / "images_deepfunneled" / p).mkdir(parents=True)
        for k in (1, 2):
            shutil.copyfile(src / p / f"{p}_{k:04d}.jpg", root / "images_deepfunneled" / p / f"{p}_{k:04d}.jpg")
    a, b, c, d = PEOPLE  # 2 folds of 2 same + 2 different pairs
    lines = [f"{a}\t1\t2", f"{b}\t1\t2", f"{a}\t1\t{c}\t2", f"{b}\t1\t{d}\t2",
             f"{c}\t1\t2", f"{d}\t1\t2", f"{c}\t1\t{a}\t2", f"{d}\t1\t{b}\t2"]
    (root / "pairs.txt").write_text("2\t2\n" + "\n".join(lines) + "\n")
    settings.SHARED_DATA = tmp_path / "shared"
    return root


@pytest.fixture
def finetuned(settings):
    """A checkpoint version: SFace with its last 2 stages changed (as a retraining leaves it)."""
    import torch

    from facecurate.recognition.models import RecognizerVersion
    from facecurate.recognition.services import artifacts
    from facecurate.recognition.services.versions import active_version
    from pipeline.recognition.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
    from pipeline.recognition.models import build_model

    config = {"backbone": "sface", "trainable_blocks": 2}
    model = build_model(config, 2)
    with torch.no_grad():
        for p in model.backbone.stages[-2:].parameters():
            p.mul_(1.05)
    rel = "checkpoints/finetuned.pt"
    save_checkpoint(artifacts.artifact_path(rel), {"format": CHECKPOINT_FORMAT, "config": config,
                                                   "class_names": ["a", "b"], "model": model.state_dict(),
                                                   "input_dim": None, "metrics": {}, "epoch": 1})
    parent = active_version()
    return parent, RecognizerVersion.objects.create(name="ft", kind="checkpoint", path=rel, parent=parent)


def test_trunk_cache_gives_the_full_networks_embeddings(finetuned, tiny_lfw):
    from facecurate.recognition.services.eval_cache import embed_fixed_set
    from facecurate.recognition.services.retrain_eval import _lfw_crops
    from facecurate.recognition.services.versions import embedder_for

    _, v = finetuned
    paths, crops, key = _lfw_crops()
    assert len(paths) == 8
    full = embedder_for(v).embed(crops)
    emb, how = embed_fixed_set(v, crops, key)
    assert how["trunk_cache"] == "made" and how["frozen_stages"] == 13
    assert (np.einsum("ij,ij->i", emb, full) > 0.999).all()
    again, how = embed_fixed_set(v, crops, key)
    assert how["trunk_cache"] == "used" and np.allclose(again, emb)


def test_lfw_pairs_detect_once_and_progress_ends_at_its_total(finetuned, tiny_lfw, monkeypatch):
    from facecurate.jobs.models import Job
    from facecurate.jobs.runner import JobContext, worker_id
    from facecurate.recognition.services import artifacts, retrain_eval
    from pipeline.recognition import faces

    parent, v = finetuned
    job = Job.objects.create(kind=Job.Kind.RETRAIN, state=Job.State.RUNNING, worker=worker_id())
    seen = []

    class Recording(JobContext):
        def progress(self, current, total=None, **kw):
            super().progress(current, total, **kw)
            seen.append((self.job.stage, self.job.progress_current, self.job.progress_total))

    first = retrain_eval.lfw_benchmark([parent, v], ctx=Recording(job))
    assert set(first["versions"]) == {str(parent.pk), str(v.pk)}
    assert first["versions"][str(v.pk)]["trunk_cache"] == "made"
    assert first["versions"][str(v.pk)]["num_pairs"] == 8 and first["versions"][str(v.pk)]["lfw_mean"] > 0.7
    for stage in dict.fromkeys(s for s, _, _ in seen):
        pts = [(c, t) for s, c, t in seen if s == stage]
        assert all(b[0] >= a[0] for a, b in zip(pts, pts[1:])), (stage, pts)
        assert pts[-1][0] == pts[-1][1], (stage, pts[-1])

    # a second retraining: no detection (crops cached by file + detector), the parent's result reused,
    # the new version through the cached trunk
    artifacts.artifact_path(f"benchmarks/lfw-pairs-version-{v.pk}.json").unlink()
    monkeypatch.setattr(faces.FaceDetector, "detect", lambda *a, **k: pytest.fail("detected again"))
    second = retrain_eval.lfw_benchmark([parent, v])
    assert second["versions"][str(v.pk)]["trunk_cache"] == "used"
    assert second["versions"][str(v.pk)]["lfw_mean"] == first["versions"][str(v.pk)]["lfw_mean"]
    assert second["versions"][str(parent.pk)] == first["versions"][str(parent.pk)]


def test_the_crops_cache_is_keyed_by_detector_and_files(tiny_lfw):
    from facecurate.recognition.services.retrain_eval import lfw_crops_key
    from pipeline.recognition.faces import FaceDetector

    wanted = sorted(str(p.relative_to(tiny_lfw / "images_deepfunneled")) for p in tiny_lfw.rglob("*.jpg"))
    base = lfw_crops_key(wanted, FaceDetector())
    assert lfw_crops_key(wanted, FaceDetector()) == base
    assert lfw_crops_key(wanted, FaceDetector(score_threshold=0.7)) != base
    img = tiny_lfw / "images_deepfunneled" / wanted[0]
    img.write_bytes(img.read_bytes() + b"\0")
    assert lfw_crops_key(wanted, FaceDetector()) != base


def test_a_fully_trained_version_is_embedded_through_openvino(finetuned, tiny_lfw, monkeypatch):
    """Every stage trained: no trunk to share, so the whole network embeds the set in batches of 64, and the
    embedder compiles it with OpenVINO once it has seen enough faces in all (batches of 64 below the threshold
    once never were: 22 ms a face instead of 11)."""
    import torch

    import pipeline.recognition.ov_infer as ov_infer
    from facecurate.recognition.models import RecognizerVersion
    from facecurate.recognition.services import artifacts
    from facecurate.recognition.services.eval_cache import embed_fixed_set
    from facecurate.recognition.services.retrain_eval import _lfw_crops
    from pipeline.recognition.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
    from pipeline.recognition.models import build_model, crops_to_tensor

    parent, _ = finetuned
    config = {"backbone": "sface", "trainable_blocks": None}
    model = build_model(config, 2)
    with torch.no_grad():
        model.backbone.stages.stem.conv.weight.mul_(1.05)
    rel = "checkpoints/all-stages.pt"
    save_checkpoint(artifacts.artifact_path(rel), {"format": CHECKPOINT_FORMAT, "config": config,
                                                   "class_names": ["a", "b"], "model": model.state_dict(),
                                                   "input_dim": None, "metrics": {}, "epoch": 1})
    v = RecognizerVersion.objects.create(name="all", kind="checkpoint", path=rel, parent=parent)
    _, crops, key = _lfw_crops()
    crops = np.concatenate([crops] * 20)  # 160 faces
    monkeypatch.setattr(ov_infer, "WORTH_IT", 100)  # more than one batch of 64, fewer than the set
    made = []
    real = ov_infer.compile_module
    monkeypatch.setattr(ov_infer, "compile_module", lambda m, x: made.append(real(m, x)) or made[-1])
    emb, how = embed_fixed_set(v, crops, key)
    assert how == {"trunk_cache": "not applicable"}
    assert len(made) == 1 and made[0] is not None
    with torch.inference_mode():
        want = torch.nn.functional.normalize(model.backbone.eval()(crops_to_tensor(crops)), dim=1).numpy()
    assert (np.einsum("ij,ij->i", emb, want) > 0.999).all()
