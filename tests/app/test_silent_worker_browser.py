"""The home page's runs table says when a run's worker has stopped reporting, before the sweeper acts
(issue 17 item 9), in the browser: a running run whose heartbeat is a minute old shows the note, one whose
worker beats does not."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.app.conftest import make_user
from tests.app.test_review_browser_fixes import browser_page

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _running_run(name: str, heartbeat_age: float, worker: str):
    from facecurate.datasets.models import Dataset
    from facecurate.jobs.models import Job
    from facecurate.recognition.services.versions import active_version
    from facecurate.runs.models import PipelineRun

    ds = Dataset.objects.create(name=name, kind="unlabeled")
    job = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, dataset=ds, state="running", worker=worker,
                             heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age), stage="embed")
    return PipelineRun.objects.create(job=job, unlabeled_dataset=ds, recognizer=active_version())


def test_home_page_names_a_silent_worker(transactional_db, live_server, settings):
    settings.JOB_HEARTBEAT_SECONDS = 10
    silent = _running_run("silent-set", 75, "w:1:x")
    beating = _running_run("beating-set", 0, "w:2:x")
    make_user("anna", "annotator")
    with browser_page(live_server, [], {"accept": False}) as page:
        page.goto(live_server.url + "/")
        page.wait_for_selector(f"#runs a[href='/runs/{beating.pk}/']")
        note = page.locator("#runs tr", has=page.locator(f"a[href='/runs/{silent.pk}/']")).locator("[data-testid=silent]")
        assert "has not reported for" in note.inner_text()
        assert int(note.inner_text().split("for ")[1].split(" s")[0]) >= 75
        other = page.locator("#runs tr", has=page.locator(f"a[href='/runs/{beating.pk}/']"))
        assert other.locator("[data-testid=silent]").count() == 0
