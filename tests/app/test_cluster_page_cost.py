"""A cluster page costs the server little (issue 17, item 10: 20 annotators at once on 2 cores):

* suggestions serialise their merge candidates in one go: the query count does not grow with the
  candidates' leases, reviewers and assigned identities;
* the page asks only for what it shows: the cluster and the run's labeled sets come in its HTML (no
  `/api/clusters/<id>/`, `/api/runs/<id>/` or `/api/datasets/`), and the identity list is fetched when the
  search box is first used.
"""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.app.conftest import make_user
from tests.app.test_review_browser_fixes import _open, browser_page
from tests.app.test_scale_pages import _stored_run


def _suggestion_queries(client, cid: int) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ctx:
        body = client.get(f"/api/clusters/{cid}/suggestions/").json()
    return len(ctx.captured_queries), len(body["merges"])


@pytest.mark.django_db
def test_suggestion_queries_do_not_grow_with_the_candidates_people(annotator_client):
    from django.utils import timezone

    from facecurate.datasets.models import Identity
    from facecurate.runs.models import Cluster

    run = _stored_run()
    clusters = list(Cluster.objects.filter(run=run, size__gt=0).order_by("number"))
    first = clusters[0]
    bare, merges = _suggestion_queries(annotator_client, first.pk)
    assert merges >= 3, "too few candidates for the check to mean anything"
    # the candidates now name a lease holder, a reviewer, an editor and an identity each
    people = [make_user(f"rev{i}", "annotator")[0] for i in range(len(clusters))]
    ident = Identity.objects.filter(dataset__in=run.labeled_datasets.all()).first()
    for c, u in zip(clusters[1:], people):
        Cluster.objects.filter(pk=c.pk).update(lease_user=u, lease_until=timezone.now(), reviewed_by=u,
                                               changed_by=u, assigned_identity=ident)
    named, merges2 = _suggestion_queries(annotator_client, first.pk)
    assert merges2 == merges
    assert named == bare, f"{bare} queries before, {named} with {merges} named candidates"
    body = annotator_client.get(f"/api/clusters/{first.pk}/suggestions/").json()
    assert {m["lease_user"] for m in body["merges"]} <= {u.username for u in people}
    assert all(m["assigned_identity_name"] == ident.name for m in body["merges"])


@pytest.mark.slow
@pytest.mark.browser
def test_cluster_page_requests_only_what_it_shows(transactional_db, live_server):
    from tests.app.review_fixtures import small_run

    run, clusters, _, labeled = small_run(people=3, per=6, media=True, name="glint-cost")
    make_user("anna", "annotator")
    with browser_page(live_server, [], {"accept": False}) as page:
        seen: list[str] = []  # requests the cluster page sends (not the home page's, still loading after sign-in)
        mine = f"/clusters/{clusters[0].pk}/"
        page.on("request", lambda r: seen.append(r.url.replace(live_server.url, ""))
                if (r.headers.get("referer") or "").endswith(mine) else None)
        _open(page, live_server.url, clusters[0].pk)
        page.wait_for_selector("[data-testid=merges] li, [data-testid=merges]:has-text('none')")
        page.wait_for_timeout(500)
        api = [u for u in seen if u.startswith("/api/")]
        assert not [u for u in api if u.startswith(f"/api/runs/{run.pk}/?") or u == f"/api/runs/{run.pk}/"], api
        assert not [u for u in api if u.startswith("/api/datasets/") or "/identities/" in u], api
        assert f"/api/clusters/{clusters[0].pk}/" not in api, api  # the cluster comes in the page
        assert page.inner_text("#c-info").startswith(f"{clusters[0].size} faces")
        # the run's labeled set is offered for a new identity without asking the API
        options = page.eval_on_selector_all("#identity-dataset option", "os => os.map(o => [o.value, o.text])")
        assert options == [[str(labeled.pk), labeled.name]]
        # the identity list comes when the search box is used
        page.keyboard.press("i")
        page.wait_for_selector("#identity-matches li")
        assert [u for u in seen if f"/api/runs/{run.pk}/identities/" in u]
