"""A run may cluster with a method other than the default: ``infomap-wccn`` (Infomap on features whitened by its
own clusters, issue 16) through the API and a real worker; a setting the method does not have is refused
with the settings it has."""
from __future__ import annotations

import numpy as np
import pytest

from tests.app.conftest import wait_for_job
from tests.app.run_fixtures import featured_dataset, rows_of
from tests.conftest import reference_features

PEOPLE = [f"s{i}" for i in range(1, 11)]


@pytest.mark.django_db
def test_a_setting_the_method_lacks_is_refused_with_its_settings(staff_client):
    unl = featured_dataset("att-methods", "att", rows_of("att", PEOPLE), labeled=False)
    resp = staff_client.post("/api/runs/", {"unlabeled_dataset": unl.pk, "method": "infomap-wccn",
                                            "params": {"whiten": 1}}, format="json")
    assert resp.status_code == 400, resp.content
    assert "whiten" in resp.json()["detail"] and "shrink" in resp.json()["detail"]


@pytest.mark.slow
def test_a_run_clusters_with_infomap_on_whitened_features(worker, staff_client):
    from facecurate.runs.models import PipelineRun, RunFace
    from pipeline.clustering.methods import cluster

    rows = rows_of("att", PEOPLE)
    unl = featured_dataset("att-wccn", "att", rows, labeled=False)
    resp = staff_client.post("/api/runs/", {"unlabeled_dataset": unl.pk, "method": "infomap-wccn",
                                            "params": {"shrink": 0.5}}, format="json")
    assert resp.status_code == 202, resp.content
    job = wait_for_job(resp.json()["job"]["id"], timeout=300)
    assert job.state == "succeeded", job.error
    run = PipelineRun.objects.get(pk=resp.json()["id"])
    assert (run.method, run.params) == ("infomap-wccn", {"shrink": 0.5})
    got = np.array(list(RunFace.objects.filter(run=run).order_by("face__id").values_list("original_cluster_id",
                                                                                        flat=True)))
    want = cluster(reference_features("att").embeddings[rows], "infomap-wccn", shrink=0.5)
    same_got = got[:, None] == got[None, :]
    assert np.array_equal(same_got, want[:, None] == want[None, :])  # the same partition


@pytest.mark.django_db
def test_a_value_out_of_range_is_refused_before_any_job_is_made(staff_client):
    from facecurate.jobs.models import Job

    unl = featured_dataset("att-methods-range", "att", rows_of("att", PEOPLE), labeled=False)
    jobs = Job.objects.count()
    resp = staff_client.post("/api/runs/", {"unlabeled_dataset": unl.pk, "method": "infomap-wccn",
                                            "params": {"shrink": -1}}, format="json")
    assert resp.status_code == 400, resp.content
    assert "shrink must be at least 0" in resp.json()["detail"]
    assert Job.objects.count() == jobs
