"""Issue 17 item 13: the run report prints counts as integers ("clustering true singletons 0", not
0.0000) and says which faces each cluster count counts: the run's counts are over all faces ("clusters
(all faces)"), the ground-truth clustering metrics over the primary faces the folders name ("clustering
clusters (primary faces)"). Fixed in review.js (7fc3cb2); checked here in a real browser."""
from __future__ import annotations

import os

import pytest

from tests.app.conftest import make_user
from tests.app.review_fixtures import small_run
from tests.app.test_browser import ARGS, CHROMIUM
from tests.app.test_review_browser import login

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CLUSTERING = {"samples": 40, "pairwise_precision": 0.8123456, "pairwise_recall": 0.5, "pairwise_f": 0.6190476,
              "bcubed_precision": 0.9, "bcubed_recall": 0.75, "bcubed_f": 0.8181818, "nmi": 0.93,
              "clusters": 9, "singletons": 3, "true_clusters": 4, "true_singletons": 0}


@pytest.fixture
def report_run(transactional_db):
    run, _, _, _ = small_run(people=2, per=4, name="report")
    run.counts = {"faces": 57, "overlap": 5, "disjoint": 50, "rejected": 2, "clusters": 11, "singletons": 4,
                  "largest_cluster": 12}
    run.metrics = {"truth": "folder names", "known_faces": 5, "unknown_faces": 35, "clustering": CLUSTERING}
    run.save()
    make_user("anna", "annotator")
    return run.pk


def test_report_counts_are_integers_and_say_which_faces(report_run, live_server):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS + ["--no-first-run"])
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            login(page, live_server.url, "anna")
            page.goto(f"{live_server.url}/runs/{report_run}/")
            page.wait_for_selector("#metrics table.metrics tr")
            page.wait_for_selector("#counts dd")
            counts = dict(page.eval_on_selector_all("#counts > div", "ds => ds.map(d => [d.querySelector('dt')"
                                                    ".textContent, d.querySelector('dd').textContent])"))
            rows = dict(page.eval_on_selector_all("#metrics table.metrics tr", "rs => rs.map(r => "
                                                  "[r.querySelector('th').textContent, r.querySelector('td').textContent])"))
        finally:
            browser.close()
    assert counts["clusters (all faces)"] == "11" and counts["singletons"] == "4" and counts["faces"] == "57"
    # counts: integers, and the cluster counts name the primary faces they are over
    assert rows["clustering true singletons (primary faces)"] == "0"
    assert rows["clustering true clusters (primary faces)"] == "4"
    assert rows["clustering clusters (primary faces)"] == "9"
    assert rows["clustering singletons (primary faces)"] == "3"
    assert rows["clustering samples"] == "40"
    # fractions keep four decimals
    assert rows["clustering pairwise precision"] == "0.8123"
    assert rows["clustering nmi"] == "0.9300"
