"""A newcomer accepts merges from the merge queue with the keyboard (issue 16): y merges the pair shown
(through the review service), n records a "no" and shows the next, u undoes; the database holds exactly
what was answered."""
from __future__ import annotations

import os

import pytest

from tests.app.conftest import make_user
from tests.app.review_fixtures import assert_consistent, small_run
from tests.app.test_browser import ARGS, CHROMIUM
from tests.app.test_merge_queue import _split
from tests.app.test_review_browser import login, shot

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def merge_run(transactional_db, monkeypatch):
    # every candidate pair offered (no probability floor): after the two true merges the queue still
    # holds unlikely pairs to answer "no" to
    monkeypatch.setattr("pipeline.review.merge_model.probability_floor", lambda: 0.0)
    run, clusters, outliers, labeled = small_run(people=4, per=12, media=True)
    halves = [_split(run, clusters[0], 5), _split(run, clusters[1], 4)]
    make_user("newbie", "annotator")
    from facecurate.runs.services.merge_queue import candidates

    candidates(run)  # (computed here: the live server's thread then only reads it)
    return run, clusters, halves


def test_newcomer_accepts_merges_with_the_keyboard(merge_run, live_server):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    from facecurate.runs.models import Cluster, ReviewAction

    run, clusters, halves = merge_run
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
            page.set_default_timeout(30_000)
            login(page, live_server.url, "newbie")
            page.goto(f"{live_server.url}/runs/{run.pk}/")
            page.click("#to-merges")
            page.wait_for_selector("body[data-ready=merges]")
            first = page.get_attribute("#merge-item", "data-item")
            kind, a, b = first.split(":")
            assert kind == "merge" and {int(a), int(b)} in ({clusters[0].pk, halves[0].pk},
                                                             {clusters[1].pk, halves[1].pk})
            assert page.locator("#merge-item .strip img").count() >= 2
            shot(page, "merge-queue")
            page.keyboard.press("y")
            page.wait_for_function(f"document.querySelector('#merge-item').dataset.item !== '{first}'")
            second = page.get_attribute("#merge-item", "data-item")
            page.keyboard.press("y")
            page.wait_for_function(f"document.querySelector('#merge-item').dataset.item !== '{second}'")
            third = page.get_attribute("#merge-item", "data-item")
            page.keyboard.press("n")
            page.wait_for_selector("#merge-status:has-text('3 answered')")
            assert page.get_attribute("#merge-item", "data-item") != third
            page.keyboard.press("u")
            page.wait_for_selector("#merge-status:has-text('Undone')")
        finally:
            browser.close()
    assert Cluster.objects.get(pk=clusters[0].pk).size == 12 and Cluster.objects.get(pk=clusters[1].pk).size == 12
    assert Cluster.objects.get(pk=halves[0].pk).size == 0 == Cluster.objects.get(pk=halves[1].pk).size
    assert ReviewAction.objects.filter(run=run, kind="merge", undone_at__isnull=True).count() == 2
    assert ReviewAction.objects.filter(run=run, kind="distinct", undone_at__isnull=False).count() == 1
    assert_consistent(run)
