"""The retraining page in a browser: an empty choice of the form says why; the Cancel button cancels a running
retraining; a version that is not better is marked so in the version list and the comparison, and promoting it
needs the override and a reason (kept with the version)."""
from __future__ import annotations

import os

import pytest

from tests.app.conftest import make_user

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]


def _rows():
    """A running retraining job and a not-better version evaluated beside its parent (ORM before the browser)."""
    from django.utils import timezone

    from facecurate.jobs.models import Job
    from facecurate.recognition.models import RecognizerVersion
    from facecurate.recognition.services.versions import active_version

    user = make_user("stella", "staff")[0]
    parent = active_version()
    job = Job.objects.create(kind=Job.Kind.RETRAIN, created_by=user, state=Job.State.RUNNING, worker="elsewhere:1:x",
                             heartbeat_at=timezone.now(), stage="evaluate: lfw_pairs", progress_current=300,
                             progress_total=15402, params={"parent": parent.pk, "labeled": [], "runs": [], "options": {}})
    bench = {"held_out_pseudo": {"versions": {str(parent.pk): {"tar@far=0.001": 0.47, "rank1": 0.72}}}}
    v = RecognizerVersion.objects.create(
        name="worse", kind="checkpoint", path="checkpoints/worse.pt", parent=parent, verdict="not_better",
        verdict_detail={"domain": {"benchmark": "held_out_pseudo", "metric": "tar@far=0.001", "parent": 0.47,
                                   "new": 0.32, "delta": -0.15}, "reasons": ["held_out_pseudo fell"]})
    bench["held_out_pseudo"]["versions"][str(v.pk)] = {"tar@far=0.001": 0.32, "rank1": 0.70}
    RecognizerVersion.objects.filter(pk=v.pk).update(metrics={"benchmarks": bench})
    from facecurate.datasets.models import Dataset

    Dataset.objects.create(name="known-people", kind="labeled")  # a labeled dataset, but no finished run
    return job, v, parent


def test_cancel_button_and_not_better_version(live_server, transactional_db, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    job, v, parent = _rows()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(30_000)
            page.goto(live_server.url + "/login/")
            page.fill("input[name=username]", "stella")
            page.fill("input[name=password]", "correct-horse-1")
            page.click("button[type=submit]")
            page.wait_for_selector("[data-testid=who]")
            page.goto(live_server.url + "/retrain/")
            page.wait_for_selector("#rt-labeled option:has-text('known-people')", state="attached")
            # an empty choice says why and what to do; a filled one says nothing
            assert "without one, the retraining trains on the labeled faces only" in page.inner_text(
                "[data-testid=rt-runs-empty]")
            assert page.locator("[data-testid=rt-labeled-empty]").count() == 0
            row = f"[data-testid=retrainings] tr[data-job='{job.pk}']"
            page.wait_for_selector(f"{row} >> text=300/15402")
            page.click(f"{row} [data-testid=cancel]")
            page.wait_for_selector(f"{row} [data-testid=cancel]:disabled")

            vrow = f"[data-testid=versions] tr[data-version='{v.pk}']"
            page.wait_for_selector(f"{vrow} >> text=NOT better than its parent")
            page.click(f"{vrow} button")
            page.wait_for_selector("[data-testid=verdict][data-verdict=not_better]")
            assert "0.4700 → 0.3200" in page.inner_text("[data-testid=verdict]")
            page.click("[data-testid=promote] button")  # no override, no reason: refused
            page.wait_for_selector("[data-testid=promote] .error:has-text('override')")
            page.check("[data-testid=promote] input[name=override]")
            page.fill("[data-testid=promote] input[name=reason]", "pseudo clusters mixed; checked by hand")
            page.click("[data-testid=promote] button")
            page.wait_for_selector("[data-testid=promote] >> text=active")
            page.screenshot(path=str(tmp_path / "retrain-page.png"), full_page=True)
        finally:
            browser.close()

    from facecurate.jobs.models import Job
    from facecurate.recognition.models import RecognizerVersion

    assert Job.objects.get(pk=job.pk).cancel_requested is True
    v = RecognizerVersion.objects.get(pk=v.pk)
    assert v.is_active and v.promotions[-1]["reason"] == "pseudo clusters mixed; checked by hand"
    assert v.promotions[-1]["override"] is True and v.promotions[-1]["by"] == "stella"
