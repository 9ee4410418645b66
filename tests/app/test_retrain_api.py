"""Retraining through the real worker on real crops (LFW labeled, glint-sample unlabeled): a new version
with metrics beside its parent's, unchanged inputs make no new version, cancel + re-run resumes from the
checkpoint, and the promoted version re-embeds a second run (the paper's iteration 2)."""
from __future__ import annotations

import time

import pytest

from tests.app.conftest import wait_for_job
from tests.app.retrain_fixtures import finished_run, labeled_lfw, unlabeled_glint

pytestmark = pytest.mark.slow

SMALL = {"trainable_blocks": 1, "batch_size": 16, "holdout_fraction": 0.25, "lr": 1e-4}


@pytest.fixture
def retrain_inputs(worker, staff_user, settings, tmp_path):
    settings.SHARED_DATA = tmp_path / "no-shared-data"  # LFW pairs: skipped with the reason
    labeled, _ = labeled_lfw()
    unl, faces, rows = unlabeled_glint()
    run, _, _ = finished_run(unl, faces, rows, labeled, user=staff_user)
    return labeled, unl, run


def _post(client, labeled, run, **options):
    resp = client.post("/api/retrainings/", {"labeled_datasets": [labeled.pk], "runs": [run.pk], **SMALL, **options},
                       format="json")
    assert resp.status_code == 202, resp.content
    assert resp.json()["job_url"].endswith(f"/api/jobs/{resp.json()['id']}/")
    return resp.json()["id"]


def test_retraining_makes_an_evaluated_version_then_unchanged_then_iteration_two(retrain_inputs, staff_client,
                                                                                   annotator_client):
    from facecurate.recognition.models import Artifact, EmbeddingFile, RecognizerVersion
    from facecurate.recognition.services.versions import active_version

    labeled, unl, run = retrain_inputs
    parent = active_version()
    job_id = _post(staff_client, labeled, run, epochs=2)
    job = wait_for_job(job_id, timeout=600)
    assert job.state == "succeeded", job.error
    v = RecognizerVersion.objects.get(pk=job.result["version"])
    assert v.parent == parent and v.kind == "checkpoint" and v.path != parent.path and not v.is_active
    assert Artifact.objects.filter(path=v.path, kind="checkpoint").exists()
    ts = v.training_summary
    pseudo_held = ts["held_out_pseudo"]
    assert len(pseudo_held["clusters"]) >= 2 and pseudo_held["faces"] >= 4  # the new domain's own test identities
    assert ts["labeled_faces"] == 36 and ts["kept"]["pseudo"] + pseudo_held["faces"] == 60
    assert ts["num_classes"] == 6 + pseudo_held["eligible_clusters"] - len(pseudo_held["clusters"])
    assert ts["training"]["attempts"] == [{"start_epoch": 0, "end_epoch": 2}] and len(ts["training"]["history"]) == 2
    assert job.result["training_set"]["held_out"]["faces"] == 12 and v.config["input_hash"] == job.result["input_hash"]

    bench = v.metrics["benchmarks"]
    assert set(bench["held_out_pseudo"]["versions"]) == {str(parent.pk), str(v.pk)}
    assert v.state == "ready" and v.verdict in ("better", "not_better") and v.verdict_detail["domain"]
    assert v.verdict_detail["domain"]["benchmark"] == "held_out_pseudo" and job.result["verdict"] == v.verdict
    held = bench["held_out_identities"]["versions"]
    assert set(held) == {str(parent.pk), str(v.pk)}
    for m in held.values():
        assert 0.5 < m["rank1"] <= 1 and m["roc"]["far"] and len(m["roc"]["far"]) == len(m["roc"]["tar"])
    clus = bench["clustering"]["runs"][0]
    assert clus["run"] == run.pk and clus["faces"] == 60 and set(clus["versions"]) == {str(parent.pk), str(v.pk)}
    assert clus["versions"][str(parent.pk)]["pairwise_f"] > 0.9
    assert "LFW not found" in bench["lfw_pairs"]["skipped"]

    detail = annotator_client.get(f"/api/retrainings/{job_id}/").json()
    assert detail["version"]["id"] == v.pk and detail["job"]["state"] == "succeeded"
    rows = {(r["benchmark"], r["metric"]): r for r in detail["comparison"]["rows"]}
    assert rows[("held_out_identities", "rank1")]["a"] == held[str(parent.pk)]["rank1"]
    assert rows[("held_out_identities", "rank1")]["b"] == held[str(v.pk)]["rank1"]
    cmp = annotator_client.get(f"/api/recognizers/{v.pk}/compare/?with={parent.pk}")
    assert cmp.status_code == 200 and cmp.json()["rows"] == detail["comparison"]["rows"]

    # the same inputs again: no new version
    again = wait_for_job(_post(staff_client, labeled, run, epochs=2), timeout=300)
    assert again.state == "succeeded" and again.result["unchanged"] is True and again.result["version"] == v.pk
    assert RecognizerVersion.objects.filter(parent=parent).count() == 1

    # promote (staff only), then a second run embeds with the new version: iteration 2
    assert annotator_client.post(f"/api/recognizers/{v.pk}/promote/").status_code == 403
    if v.verdict == "better":
        assert staff_client.post(f"/api/recognizers/{v.pk}/promote/").json()["is_active"] is True
    else:
        assert staff_client.post(f"/api/recognizers/{v.pk}/promote/").status_code == 409
        assert staff_client.post(f"/api/recognizers/{v.pk}/promote/", {"override": True, "reason": "iteration 2"},
                                 format="json").json()["is_active"] is True
    assert RecognizerVersion.objects.filter(is_active=True).count() == 1 and active_version() == v
    resp = staff_client.post("/api/runs/", {"unlabeled_dataset": unl.pk, "labeled_datasets": [labeled.pk],
                                            "truth_from_folders": True}, format="json")
    assert resp.status_code == 202, resp.content
    job2 = wait_for_job(resp.json()["job"]["id"], timeout=600)
    assert job2.state == "succeeded", job2.error
    assert resp.json()["recognizer"] == v.pk
    assert sum(EmbeddingFile.objects.filter(dataset=unl, recognizer=v).values_list("count", flat=True)) == 60
    assert staff_client.get(f"/api/runs/{resp.json()['id']}/").json()["metrics"]["clustering"]["pairwise_f"] > 0.9


def test_cancelled_retraining_resumes_from_its_checkpoint(retrain_inputs, staff_client):
    from facecurate.jobs.models import Job
    from facecurate.recognition.models import RecognizerVersion

    labeled, unl, run = retrain_inputs
    epochs = 8
    job_id = _post(staff_client, labeled, run, epochs=epochs, batch_size=8)
    deadline = time.monotonic() + 300
    while True:
        job = Job.objects.get(pk=job_id)
        if job.stage == "train" and job.progress_info.get("epochs_done", 0) >= 1:
            break
        assert not job.is_terminal and time.monotonic() < deadline, (job.state, job.stage, job.error)
        time.sleep(0.05)
    info = job.progress_info
    assert info["loss"] > 0 and info["faces_per_s"] > 0 and "eta_seconds" in info and info["epochs"] == epochs
    assert staff_client.post(f"/api/jobs/{job_id}/cancel/").status_code == 200
    job = wait_for_job(job_id, timeout=120)
    assert job.state == "cancelled", "training finished before the cancel landed; raise the epochs"
    assert not RecognizerVersion.objects.filter(job_id=job_id).exists()

    assert staff_client.post(f"/api/jobs/{job_id}/rerun/").status_code == 202
    job = wait_for_job(job_id, timeout=600)
    assert job.state == "succeeded", job.error
    v = RecognizerVersion.objects.get(pk=job.result["version"])
    attempts = v.training_summary["training"]["attempts"]
    assert len(attempts) == 2 and attempts[0]["start_epoch"] == 0 and "end_epoch" not in attempts[0]
    assert attempts[1]["start_epoch"] >= 1 and attempts[1]["end_epoch"] == epochs  # done epochs not redone
    history = v.training_summary["training"]["history"]
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
