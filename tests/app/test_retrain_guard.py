"""The retraining guard (issue 15): a version worse on the new domain is flagged not better and is not
promoted by accident; a cancelled or failed evaluation leaves no version; evaluation progress is per
benchmark and never goes backwards. Real faces and a real (damaged) SFace checkpoint; no worker."""
from __future__ import annotations

import pytest

from tests.app.retrain_fixtures import finished_run, labeled_lfw, unlabeled_glint

pytestmark = pytest.mark.django_db


def _damaged_sface(path, noise: float = 4.0, seed: int = 0):
    """An SFace checkpoint whose weights got noise: a recognizer that is really worse than SFace."""
    import torch

    from pipeline.recognition.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
    from pipeline.recognition.models import build_model

    config = {"backbone": "sface", "trainable_blocks": 1}
    model = build_model(config, 2)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.backbone.parameters():
            if p.ndim > 1:
                p.add_(noise * p.std() * torch.randn(p.shape, generator=g))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "config": config, "class_names": ["a", "b"],
                           "model": model.state_dict(), "input_dim": None, "metrics": {}, "epoch": 1})


class FakeCtx:
    """The JobContext surface retrain's evaluation uses; ``cancel_after`` check_cancel calls raise JobCancelled."""

    def __init__(self, job, cancel_after: int | None = None) -> None:
        self.job, self.cancel_after, self.calls, self.result = job, cancel_after, 0, {}

    def progress(self, *a, **k):
        pass

    def check_cancel(self):
        from facecurate.jobs.runner import JobCancelled

        self.calls += 1
        if self.cancel_after is not None and self.calls > self.cancel_after:
            raise JobCancelled()

    def set_result(self, **values):
        self.result.update(values)


@pytest.fixture
def damaged(staff_user, settings, tmp_path):
    """A labeled LFW set, a run over glint people, and a 'retrained' version that is worse than its parent."""
    from facecurate.jobs.models import Job
    from facecurate.recognition.models import Artifact, RecognizerVersion
    from facecurate.recognition.services import artifacts
    from facecurate.recognition.services.retrain import check_options, gather
    from facecurate.recognition.services.versions import active_version

    settings.SHARED_DATA = tmp_path / "no-shared-data"  # LFW pairs skipped: the new domain decides
    labeled, _ = labeled_lfw()
    unl, faces, rows = unlabeled_glint()
    run, _, _ = finished_run(unl, faces, rows, labeled, user=staff_user)
    opts = check_options({"holdout_fraction": 0.25, "pseudo_holdout_fraction": 0.6})
    g = gather([labeled.pk], [run.pk], opts)
    parent = active_version()
    job = Job.objects.create(kind=Job.Kind.RETRAIN, created_by=staff_user, state=Job.State.RUNNING,
                             params={"parent": parent.pk, "labeled": [labeled.pk], "runs": [run.pk], "options": opts})
    rel = f"checkpoints/retrain-{job.pk}.pt"
    _damaged_sface(artifacts.artifact_path(rel))
    artifacts.record(rel, Artifact.Kind.CHECKPOINT, job)
    version = RecognizerVersion.objects.create(
        name="worse", kind="checkpoint", path=rel, parent=parent, job=job, state="evaluating", verdict="unknown",
        config={"backbone": "sface"}, training_summary={"training": {"final_loss": 1.0}})
    return dict(labeled=labeled, run=run, g=g, opts=opts, parent=parent, job=job, version=version)


@pytest.mark.slow
def test_pseudo_identities_are_held_out_whole_and_seeded(damaged):
    from facecurate.recognition.services.retrain import gather, training_set
    from facecurate.runs.models import RunFace

    g, opts = damaged["g"], damaged["opts"]
    rep = g.report["held_out_pseudo"]
    assert rep["eligible_clusters"] >= 5 and len(rep["clusters"]) == 3 and rep["faces"] == len(g.pseudo_held_face_ids)
    for c in rep["clusters"]:  # whole clusters
        members = set(RunFace.objects.filter(cluster_id=c).values_list("face_id", flat=True))
        assert members == set(g.pseudo_held_face_ids[g.pseudo_held_cluster == c].tolist())
    ts, face_ids, _ = training_set(g, opts)
    assert not set(face_ids.tolist()) & set(g.pseudo_held_face_ids.tolist()), "held-out clusters never train"
    again = gather([damaged["labeled"].pk], [damaged["run"].pk], opts)
    assert again.report["held_out_pseudo"]["clusters"] == rep["clusters"]  # seeded


@pytest.mark.slow
def test_a_worse_version_is_flagged_and_not_promoted_by_accident(damaged, staff_client, annotator_client):
    from facecurate.recognition.models import RecognizerVersion
    from facecurate.recognition.services.retrain import evaluate_or_discard

    d = damaged
    v = d["version"]
    evaluate_or_discard(FakeCtx(d["job"]), v, d["parent"], d["g"], d["opts"])
    v.refresh_from_db()
    pseudo = v.metrics["benchmarks"]["held_out_pseudo"]["versions"]
    assert v.state == "ready" and v.verdict == "not_better", (v.verdict_detail, pseudo)
    dom = v.verdict_detail["domain"]
    assert dom["benchmark"] == "held_out_pseudo" and dom["delta"] < 0
    assert dom["new"] == pseudo[str(v.pk)][dom["metric"]] and dom["parent"] == pseudo[str(d["parent"].pk)][dom["metric"]]

    body = annotator_client.get(f"/api/recognizers/{v.pk}/").json()
    assert body["verdict"] == "not_better" and body["verdict_detail"]["reasons"]
    assert body["checkpoint"]["path"] == v.path and len(body["checkpoint"]["sha256"]) == 64
    listed = {r["id"]: r for r in annotator_client.get("/api/recognizers/").json()["results"]}
    assert listed[v.pk]["verdict"] == "not_better" and listed[v.pk]["checkpoint"]["recorded"] is True

    resp = staff_client.post(f"/api/recognizers/{v.pk}/promote/")
    assert resp.status_code == 409 and resp.json()["code"] == "not_better"
    resp = staff_client.post(f"/api/recognizers/{v.pk}/promote/", {"override": True}, format="json")
    assert resp.status_code == 400 and resp.json()["code"] == "override_needs_reason"
    resp = staff_client.post(f"/api/recognizers/{v.pk}/promote/", {"override": True, "reason": "  "}, format="json")
    assert resp.status_code == 400
    assert RecognizerVersion.objects.get(is_active=True) == d["parent"]

    why = "held-out clusters are mixed; checked 40 faces by hand"
    resp = staff_client.post(f"/api/recognizers/{v.pk}/promote/", {"override": True, "reason": why}, format="json")
    assert resp.status_code == 200 and resp.json()["is_active"] is True
    (entry,) = RecognizerVersion.objects.get(pk=v.pk).promotions
    assert entry["reason"] == why and entry["override"] is True and entry["by"] == "stella" and entry["at"]
    assert entry["verdict"] == "not_better"


def test_a_better_version_promotes_without_override_and_unknown_needs_one(staff_client):
    from facecurate.recognition.models import RecognizerVersion
    from facecurate.recognition.services.versions import active_version

    base = active_version()
    good = RecognizerVersion.objects.create(name="good", kind="checkpoint", path="c/g.pt", parent=base, verdict="better")
    unknown = RecognizerVersion.objects.create(name="unk", kind="checkpoint", path="c/u.pt", parent=base,
                                               verdict="unknown")
    busy = RecognizerVersion.objects.create(name="busy", kind="checkpoint", path="c/b.pt", parent=base,
                                            state="evaluating", verdict="unknown")
    assert staff_client.post(f"/api/recognizers/{good.pk}/promote/").status_code == 200
    assert staff_client.post(f"/api/recognizers/{unknown.pk}/promote/").status_code == 409
    resp = staff_client.post(f"/api/recognizers/{busy.pk}/promote/", {"override": True, "reason": "x"}, format="json")
    assert resp.status_code == 409 and resp.json()["code"] == "not_ready"
    assert staff_client.post(f"/api/recognizers/{base.pk}/promote/").status_code == 200  # rolling back: no verdict


@pytest.mark.slow
@pytest.mark.parametrize("how", ["cancel", "error"])
def test_a_cancelled_or_failed_evaluation_leaves_no_version(damaged, how, monkeypatch):
    from facecurate.jobs.runner import JobCancelled
    from facecurate.recognition.models import RecognizerVersion
    from facecurate.recognition.services import retrain_eval
    from facecurate.recognition.services.retrain import evaluate_or_discard

    d = damaged
    ctx = FakeCtx(d["job"], cancel_after=3 if how == "cancel" else None)
    if how == "error":
        def boom(*a, **k):
            raise RuntimeError("disk full")
        monkeypatch.setattr(retrain_eval, "held_out_benchmark", boom)
    with pytest.raises(JobCancelled if how == "cancel" else RuntimeError):
        evaluate_or_discard(ctx, d["version"], d["parent"], d["g"], d["opts"])
    assert not RecognizerVersion.objects.filter(job=d["job"]).exists()
    assert ctx.result["version"] is None and ctx.result["discarded_version"]


@pytest.mark.slow
def test_evaluation_progress_is_per_benchmark_and_never_goes_backwards(damaged):
    """Each benchmark is a stage of its own whose count only goes up and ends at its total (the issue's
    progress sat at 7680/7701 while the second version embedded: one stage, one total, both versions)."""
    from facecurate.jobs.models import Job
    from facecurate.jobs.runner import JobContext, worker_id
    from facecurate.recognition.services.retrain import evaluate_or_discard

    d = damaged
    Job.objects.filter(pk=d["job"].pk).update(worker=worker_id())
    seen = []

    class Recording(JobContext):
        def progress(self, current, total=None, **kw):
            super().progress(current, total, **kw)
            seen.append((self.job.stage, self.job.progress_current, self.job.progress_total))

    evaluate_or_discard(Recording(Job.objects.get(pk=d["job"].pk)), d["version"], d["parent"], d["g"], d["opts"])
    stages = list(dict.fromkeys(s for s, _, _ in seen))
    assert "evaluate: held_out_pseudo" in stages and "evaluate: held_out_identities" in stages
    for stage in stages:
        points = [(c, t) for s, c, t in seen if s == stage]
        assert len({t for _, t in points}) == 1, f"{stage}: the total changed"
        assert all(b[0] >= a[0] for a, b in zip(points, points[1:])), f"{stage} went backwards: {points}"
        assert points[-1][0] == points[-1][1], f"{stage} ended at {points[-1]}"
    # stages come one after the other: none is re-entered
    runs = [s for i, (s, _, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != s]
    assert len(runs) == len(stages)


def test_verdict_rules():
    from facecurate.recognition.services.retrain_verdict import verdict

    def b(parent, new, metric="tar@far=0.001"):
        return {"versions": {"1": {metric: parent}, "2": {metric: new}}}

    assert verdict({"held_out_pseudo": b(0.5, 0.6)}, 1, 2)[0] == "better"
    assert verdict({"held_out_pseudo": b(0.5, 0.4), "held_out_identities": b(0.9, 0.95)}, 1, 2)[0] == "not_better"
    # the named evaluation set wins over the pseudo-identities
    assert verdict({"eval_datasets": b(0.5, 0.45), "held_out_pseudo": b(0.5, 0.9)}, 1, 2)[0] == "not_better"
    # a guard that falls too far makes it not better; LFW may lose at most 0.3 points
    assert verdict({"held_out_pseudo": b(0.5, 0.6), "lfw_pairs": b(0.99, 0.98, "lfw_mean")}, 1, 2)[0] == "not_better"
    assert verdict({"held_out_pseudo": b(0.5, 0.6), "lfw_pairs": b(0.99, 0.989, "lfw_mean")}, 1, 2)[0] == "better"
    # labeled identities alone never say better
    v, detail = verdict({"held_out_identities": b(0.5, 0.9), "held_out_pseudo": {"skipped": "1 identities"}}, 1, 2)
    assert v == "unknown" and detail["reasons"]
    # no TAR at 1e-3 on either side: rank-1
    assert verdict({"held_out_pseudo": {"versions": {"1": {"tar@far=0.001": None, "rank1": 0.7},
                                                     "2": {"tar@far=0.001": 0.3, "rank1": 0.8}}}}, 1, 2)[0] == "better"
