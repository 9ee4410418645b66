"""A newcomer works the guided review (the one review queue the simulator measures) with the keyboard
(issue 16, item 1): a merge group shows its candidates, a digit ticks the one that is the same person,
Enter merges it and records "not this person" for the rest, n says none, u takes the last decision
back; the database holds exactly that."""
from __future__ import annotations

import os
from contextlib import contextmanager

import pytest

from tests.app.test_browser import ARGS, CHROMIUM
from tests.app.test_merge_browser import merge_run  # noqa: F401  (fixture)
from tests.app.test_review_browser import login, shot

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@contextmanager
def _newcomer_on(live_server, path: str):
    """A page signed in as the annotator "newbie" (1366x900), opened at ``path``."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
            page.set_default_timeout(30_000)
            login(page, live_server.url, "newbie")
            page.goto(live_server.url + path)
            yield page
        finally:
            browser.close()


def _tick_true_partner(page, clusters, halves) -> str:
    """Press the digit of the candidate that is the other part of this group's split person."""
    item = page.get_attribute("#guided-item", "data-item")
    kind, cluster, _ = item.split(":")
    assert kind == "merge", item
    parts = {c.pk: h.pk for c, h in zip(clusters, halves)}
    partner = {**parts, **{h: c for c, h in parts.items()}}[int(cluster)]
    ids = [int(x) for x in page.eval_on_selector_all("#guided-item li", "els => els.map(e => e.dataset.id)")]
    assert partner in ids, (item, ids)
    page.keyboard.press(str(ids.index(partner) + 1))
    assert page.locator(f"#guided-item li[data-id='{partner}'].ticked").count() == 1
    return item


def _skip_clean_ups(page) -> str:
    """Skip clean-up items (they open the cluster page) until a decision item shows."""
    while page.get_attribute("#guided-item", "data-state") == "clean":
        item = page.get_attribute("#guided-item", "data-item")
        page.keyboard.press("s")
        page.wait_for_function(f"document.querySelector('#guided-item').dataset.item !== '{item}'")
    return page.get_attribute("#guided-item", "data-item")


def test_newcomer_merges_a_group_with_the_keyboard(merge_run, live_server):  # noqa: F811
    from facecurate.runs.models import Cluster, ReviewAction

    run, clusters, halves = merge_run
    with _newcomer_on(live_server, f"/runs/{run.pk}/") as page:
        page.click("#to-guided")
        page.wait_for_selector("body[data-ready=guided]")
        assert page.locator("#guided-item .anchor .strip img").count() >= 1
        _skip_clean_ups(page)
        first = _tick_true_partner(page, clusters, halves)
        shot(page, "guided-review")
        page.keyboard.press("Enter")
        page.wait_for_selector("#guided-status:has-text('1 merged · 1 decided')")
        assert page.get_attribute("#guided-item", "data-item") != first
        _skip_clean_ups(page)
        second = page.get_attribute("#guided-item", "data-item")
        ids = [int(x) for x in page.eval_on_selector_all("#guided-item li", "els => els.map(e => e.dataset.id)")]
        parts = {c.pk: h.pk for c, h in zip(clusters, halves)}
        assert ids[0] == {**parts, **{h: c for c, h in parts.items()}}[int(second.split(":")[1])], (second, ids)
        page.keyboard.press("y")  # only the most likely one: its partner; the others recorded as other people
        page.wait_for_selector("#guided-status:has-text('1 merged · 2 decided')")
        third = _skip_clean_ups(page)
        page.keyboard.press("n")
        page.wait_for_selector("#guided-status:has-text('3 decided')")
        assert page.get_attribute("#guided-item", "data-item") != third
        page.keyboard.press("u")
        page.wait_for_selector("#guided-status:has-text('Undone')")
    for c, h in zip(clusters, halves):  # both split people whole again (in either part)
        assert sorted([Cluster.objects.get(pk=c.pk).size, Cluster.objects.get(pk=h.pk).size]) == [0, 12]
    assert ReviewAction.objects.filter(run=run, kind="merge", undone_at__isnull=True).count() == 2
    live_no = ReviewAction.objects.filter(run=run, kind="distinct", undone_at__isnull=True).count()
    undone = ReviewAction.objects.filter(run=run, undone_at__isnull=False)
    assert undone.exists() and set(undone.values_list("kind", flat=True)) == {"distinct"}  # the "none" taken back
    assert live_no == ReviewAction.objects.filter(run=run, kind="distinct").count() - undone.count()


def _skip_until(page, prefix: str, limit: int = 40) -> str:
    """Skip items until one whose key starts with ``prefix`` shows."""
    for _ in range(limit):
        item = page.get_attribute("#guided-item", "data-item")
        if item.startswith(prefix):
            return item
        page.keyboard.press("s")
        page.wait_for_function(f"document.querySelector('#guided-item').dataset.item !== '{item}'")
    raise AssertionError(f"no {prefix} item in the first {limit}")


def test_newcomer_places_a_rejected_face_and_cleans_up_a_cluster_from_the_guided_review(merge_run, live_server):  # noqa: F811
    from facecurate.runs.models import RunFace
    from facecurate.runs.services import review
    from tests.app.conftest import make_user

    run, clusters, _ = merge_run
    staff, _ = make_user("lead", "annotator")
    face = RunFace.objects.filter(cluster=clusters[2]).order_by("id").first()
    review.reject(staff, clusters[2].pk, clusters[2].version, [face.pk])
    with _newcomer_on(live_server, f"/runs/{run.pk}/guided/") as page:
        page.wait_for_selector("body[data-ready=guided]")
        _skip_until(page, "place:")
        assert page.locator("#guided-item li input[type=radio]").count() >= 1
        ids = [int(x) for x in page.eval_on_selector_all("#guided-item li", "els => els.map(e => e.dataset.id)")]
        assert clusters[2].pk in ids, ids  # its own person is among the offers
        page.keyboard.press(str(ids.index(clusters[2].pk) + 1))
        page.keyboard.press("Enter")
        page.wait_for_selector("#guided-status:has-text('placed')")
        _skip_until(page, "clean:")
        shot(page, "guided-clean")
        page.keyboard.press("Enter")
        page.wait_for_selector("body[data-ready=cluster]")
        assert "Opened from the guided review" in page.inner_text("body")
        page.keyboard.press("n")
        page.wait_for_selector("body[data-ready=guided]")
        assert page.url.endswith(f"/runs/{run.pk}/guided/")
    assert RunFace.objects.get(pk=face.pk).cluster_id == clusters[2].pk


@pytest.fixture
def lone_run(transactional_db, monkeypatch):
    """A run whose likely merges are all done (every pair under the probability floor, no clean-ups), with one
    face of person 3 alone in a cluster of its own."""
    from facecurate.runs.services import merge_queue
    from tests.app.conftest import make_user
    from tests.app.review_fixtures import small_run
    from tests.app.test_merge_queue import _split

    monkeypatch.setattr("pipeline.review.merge_model.probability_floor", lambda: 1.01)
    monkeypatch.setattr(merge_queue, "clean_items", lambda run, **kw: [])
    run, clusters, _, _ = small_run(people=4, per=12, media=True)
    single = _split(run, clusters[2], 1)
    make_user("newbie", "annotator")
    merge_queue.candidates(run)  # (computed here: the live server's thread then only reads it)
    return run, clusters, single


def test_a_face_alone_is_shown_with_its_nearest_clusters_once_the_likely_merges_are_done(lone_run, live_server):
    from facecurate.runs.models import Cluster

    run, clusters, single = lone_run
    with _newcomer_on(live_server, f"/runs/{run.pk}/guided/") as page:
        page.wait_for_selector("body[data-ready=guided]")
        assert page.get_attribute("#guided-item", "data-item") == f"merge:{single.pk}:"
        assert "A face alone" in page.inner_text("#guided-item .anchor h2")
        assert "The likely merges are done" in page.inner_text("#guided-item .why")
        ids = [int(x) for x in page.eval_on_selector_all("#guided-item li", "els => els.map(e => e.dataset.id)")]
        assert clusters[2].pk in ids
        shot(page, "guided-review-lone-face")
        page.keyboard.press(str(ids.index(clusters[2].pk) + 1))
        page.keyboard.press("Enter")
        page.wait_for_selector("#guided-status:has-text('1 merged · 1 decided')")
    assert Cluster.objects.get(pk=single.pk).size == 0 and Cluster.objects.get(pk=clusters[2].pk).size == 12
