"""List endpoints cost the same number of queries with 10 faces or 600: counts come from grouped
queries per page, and the lists that grow with the data page by id (no COUNT over the table)."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext


def _fill(n_images: int, tag: str):
    from facecurate.datasets.models import Dataset, Face, Identity, Image

    ds = Dataset.objects.create(name=f"set-{tag}", kind="labeled")
    ids = Identity.objects.bulk_create([Identity(dataset=ds, name=f"p{i}") for i in range(max(1, n_images // 5))])
    images = Image.objects.bulk_create([
        Image(dataset=ds, identity=ids[i % len(ids)], source_name=f"{i}.jpg", file=f"x/{tag}{i}", sha256=f"{tag}{i}",
              size_bytes=1, status="ok" if i % 7 else "no_face") for i in range(n_images)])
    Face.objects.bulk_create([Face(image=im, dataset=ds, identity=im.identity, index=k, is_primary=k == 0,
                                   crop=f"c/{im.pk}-{k}.png") for im in images if im.status == "ok" for k in range(2)])
    return ds


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        resp = client.get(url)
    assert resp.status_code == 200, resp.content
    return len(ctx.captured_queries)


@pytest.mark.django_db
def test_list_endpoints_do_not_grow_with_faces(annotator_client):
    small, big = _fill(10, "s"), _fill(600, "b")
    for template in ("/api/datasets/?limit=5", "/api/images/?dataset={}&limit=50", "/api/faces/?dataset={}&limit=50",
                     "/api/identities/?dataset={}&limit=50", "/api/jobs/?limit=20", "/api/datasets/{}/",
                     "/api/runs/?limit=20", "/api/recognizers/"):
        a = _queries(annotator_client, template.format(small.pk))
        b = _queries(annotator_client, template.format(big.pk))
        assert a == b, f"{template}: {a} queries with 10 images, {b} with 600"
        assert b <= 8, f"{template}: {b} queries"


@pytest.mark.django_db
def test_datasets_list_counts_are_right(annotator_client):
    big = _fill(60, "c")
    body = annotator_client.get("/api/datasets/").json()["results"][0]
    assert body["image_counts"] == {"pending": 0, "ok": 51, "no_face": 9, "error": 0, "total": 60}
    assert body["face_count"] == 102 and body["identity_count"] == 12
    page = annotator_client.get(f"/api/images/?dataset={big.pk}&limit=25").json()
    assert len(page["results"]) == 25 and page["next"] and "count" not in page
    assert {im["face_count"] for im in page["results"]} == {0, 2}
    assert annotator_client.get(f"/api/images/?dataset={big.pk}&limit=100000").status_code == 200


@pytest.mark.django_db
def test_runs_list_costs_the_same_with_one_run_or_five(annotator_client, staff_user):
    """Every list test holds several rows: with one row an N+1 cannot show."""
    from facecurate.jobs.models import Job
    from facecurate.runs.models import Cluster
    from facecurate.runs.services.start import start_run

    ds = _fill(10, "r")
    ds.kind = "unlabeled"
    ds.save(update_fields=["kind"])

    def one_more_run():
        run = start_run(staff_user, ds)
        Job.objects.filter(pk=run.job_id).update(state="succeeded")
        Cluster.objects.bulk_create([Cluster(run=run, review_state=s) for s in ("pending", "confirmed", "confirmed")])

    one_more_run()
    one = _queries(annotator_client, "/api/runs/?limit=20")
    for _ in range(4):
        one_more_run()
    five = _queries(annotator_client, "/api/runs/?limit=20")
    body = annotator_client.get("/api/runs/?limit=20").json()["results"]
    assert len(body) == 5 and all(r["reviewed"] == {"pending": 1, "confirmed": 2, "dismissed": 0} for r in body)
    assert all(r["job"]["created_by"] == staff_user.username for r in body)
    assert one == five, f"/api/runs/: {one} queries with one run, {five} with five"


@pytest.mark.django_db
def test_runs_name_their_labeled_datasets(annotator_client, staff_user):
    from facecurate.runs.services.start import start_run

    unl = _fill(5, "u")
    unl.kind = "unlabeled"
    unl.save(update_fields=["kind"])
    known = [_fill(5, "k1"), _fill(5, "k2")]
    start_run(staff_user, unl, known)
    run = annotator_client.get("/api/runs/").json()["results"][0]
    assert run["labeled_dataset_names"] == [d.name for d in sorted(known, key=lambda d: d.pk)]
