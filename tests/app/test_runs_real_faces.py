"""A pipeline run over real faces through a real worker: glint-sample unlabeled against a labeled LFW
subset that holds 7 of glint's 24 people. The stored rows equal what the pipeline functions give on
the same features, and the ground-truth metrics say the separation and clustering worked."""
from __future__ import annotations

import numpy as np
import pytest

from tests.app.conftest import wait_for_job
from tests.app.run_fixtures import featured_dataset, glint_people, lfw_name, lfw_names_with, rows_of
from tests.conftest import reference_features

pytestmark = pytest.mark.slow


def _partition(labels: np.ndarray) -> set[frozenset]:
    groups: dict[int, set] = {}
    for i, c in enumerate(labels.tolist()):
        if c >= 0:
            groups.setdefault(c, set()).add(i)
    return {frozenset(g) for g in groups.values()}


@pytest.fixture
def glint_run(worker, staff_client):
    known = [lfw_name(n) for n in glint_people() if n in {"Daniel Radcliffe", "Gwyneth Paltrow", "Halle Berry",
                                                          "Kate Winslet", "Keanu Reeves", "Leonardo DiCaprio",
                                                          "Tom Hanks"}]
    labeled = featured_dataset("lfw-known", "lfw", rows_of("lfw", sorted(set(lfw_names_with(20)) | set(known))),
                               labeled=True)
    unlabeled = featured_dataset("glint", "glint", np.arange(len(reference_features("glint"))), labeled=False)
    resp = staff_client.post("/api/runs/", {"unlabeled_dataset": unlabeled.pk, "labeled_datasets": [labeled.pk],
                                            "truth_from_folders": True}, format="json")
    assert resp.status_code == 202, resp.content
    job = wait_for_job(resp.json()["job"]["id"], timeout=300)
    assert job.state == "succeeded", job.error
    return resp.json()["id"], labeled, unlabeled, set(known)


def test_run_rows_equal_the_pipeline_functions(glint_run, staff_client):
    from facecurate.runs.models import PipelineRun, RunFace
    from facecurate.runs.services import scoring
    from pipeline.clustering.methods import cluster
    from pipeline.uncertainty import clustering_uncertainty

    run_id, labeled, unlabeled, known = glint_run
    run = PipelineRun.objects.get(pk=run_id)
    lfw, glint = reference_features("lfw"), reference_features("glint")
    lab_rows = rows_of("lfw", sorted(set(lfw_names_with(20)) | known))
    _, ident = np.unique(lfw.labels[lab_rows], return_inverse=True)
    cm = scoring.class_means(lfw.embeddings[lab_rows], ident)
    scores, arg = scoring.max_logits(cm, glint.embeddings)
    thr = scoring.equal_error_threshold(*scoring.reference_scores(cm, lfw.embeddings[lab_rows], ident))
    expected, _ = scoring.separate(scores.astype(np.float64), arg, thr)

    rows = list(RunFace.objects.filter(run=run).order_by("face_id").values_list(
        "overlap_state", "max_logit", "original_cluster_id", "p_minus"))
    state = np.array([r[0] for r in rows])
    assert np.array_equal(state, expected.state)
    assert np.allclose([r[1] for r in rows], scores, atol=1e-5)

    disjoint = np.flatnonzero(expected.state == 0)
    want = cluster(glint.embeddings[disjoint], "infomap")
    got = np.array([-1 if r[2] is None else r[2] for r in rows])[disjoint]
    assert _partition(got) == _partition(want)
    unc = clustering_uncertainty(glint.embeddings[disjoint], want)
    stored = np.array([np.nan if r[3] is None else r[3] for r in rows])[disjoint]
    assert np.allclose(stored, unc.p_minus, atol=1e-5, equal_nan=True)

    body = staff_client.get(f"/api/runs/{run_id}/").json()
    m = body["metrics"]
    in_labeled = {n.replace("_", " ") for n in set(lfw_names_with(20)) | known}
    assert m["known_faces"] == int(np.isin(glint.labels, list(in_labeled)).sum()) == 540  # 9 people x 60
    assert m["overlap_fnr_rejected_as_miss"] < 0.10 and m["disjoint_fpr"] < 0.02
    assert m["clustering"]["pairwise_f"] > 0.9
    assert body["stages"]["store"]["state"] == "done" and body["job"]["state"] == "succeeded"
    assert body["stages"]["candidates"]["state"] == "done"  # the merge queue's candidates, built on the worker
    assert body["overlap_report"]["degenerate"] is None and body["overlap_report"]["thresholds"]


def test_cluster_queue_is_most_doubtful_first_with_keyset_pages(glint_run, annotator_client):
    run_id = glint_run[0]
    seen, url = [], f"/api/runs/{run_id}/clusters/?state=all&limit=7"
    while url:
        page = annotator_client.get(url).json()
        seen += page["results"]
        url = page["next"]
    keys = [(-c["priority"], c["id"]) for c in seen]
    assert keys == sorted(keys) and len({c["id"] for c in seen}) == len(seen)
    from facecurate.runs.models import Cluster

    assert len(seen) == Cluster.objects.filter(run_id=run_id).count()
    top = seen[0]
    faces = annotator_client.get(f"/api/clusters/{top['id']}/faces/?limit=500").json()["results"]
    assert len(faces) == top["size"]
    p = [f["p_minus"] if f["p_minus"] is not None else -1 for f in faces]
    assert p == sorted(p, reverse=True)
    sugg = annotator_client.get(f"/api/clusters/{top['id']}/suggestions/").json()
    assert sugg["merges"] and all(m["id"] != top["id"] for m in sugg["merges"])
    sims = [m["similarity"] for m in sugg["merges"]]
    assert sims == sorted(sims, reverse=True)
    assert len(sugg["identities"]) == 5 and sugg["identities"][0]["score"] >= sugg["identities"][-1]["score"]
    assert annotator_client.get(f"/api/runs/{run_id}/clusters/?cursor=bogus").status_code == 400
    assert annotator_client.post("/api/runs/", {}, format="json").status_code == 403
