"""The review UI in a real browser (Debian's Chromium, headless) against the live server and a real worker,
on real faces: a pipeline run over glint-sample (part of its people labeled), the report's two figures, the
queue, and one annotator's review by keyboard and mouse while a second annotator is told the cluster is
taken. The database must then hold exactly what was done. Screenshots of every page go to
tests/artifacts/review/ (and, with FACECURATE_DOC_SCREENSHOTS=1, small copies to docs/screenshots/)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.app.conftest import make_user, wait_for_job
from tests.app.review_fixtures import assert_consistent, write_media
from tests.app.run_fixtures import featured_dataset
from tests.app.test_browser import ARGS, CHROMIUM
from tests.conftest import reference_features

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ART = Path(__file__).resolve().parents[1] / "artifacts" / "review"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DOC_SHOTS = {"home-staff", "report", "queue", "cluster", "help", "lease"}


def shot(page, name: str, full: bool = False) -> None:
    ART.mkdir(parents=True, exist_ok=True)
    path = ART / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    if os.environ.get("FACECURATE_DOC_SCREENSHOTS") == "1" and name in DOC_SHOTS:
        from PIL import Image

        DOCS.mkdir(parents=True, exist_ok=True)
        img = Image.open(path).convert("RGB")
        img.thumbnail((1000, 1000))
        img.quantize(colors=128).save(DOCS / f"{name}.png", optimize=True)


def login(page, url, user):
    page.goto(url + "/login/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", "correct-horse-1")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=who]")


@pytest.fixture
def glint_run(worker, staff_client):
    """A finished run: glint-sample's first 5 people half labeled; everything else unlabeled."""
    feats = reference_features("glint")
    names = sorted(set(feats.labels.tolist()))
    known = np.concatenate([np.flatnonzero(feats.labels == n)[::2] for n in names[:5]])
    rest = np.setdiff1d(np.arange(len(feats.labels)), known)
    labeled = featured_dataset("glint-known", "glint", known, labeled=True)
    unlabeled = featured_dataset("glint-sample", "glint", rest, labeled=False)
    write_media(unlabeled)
    write_media(labeled)
    resp = staff_client.post("/api/runs/", {"unlabeled_dataset": unlabeled.pk, "labeled_datasets": [labeled.pk],
                                            "method": "hac",  # HAC errs a little: enough wrong faces for Fig. 4c
                                            "truth_from_folders": True}, format="json")
    assert resp.status_code == 202, resp.content
    assert wait_for_job(resp.json()["job"]["id"], timeout=300).state == "succeeded"
    ART.mkdir(parents=True, exist_ok=True)
    (ART / "run.json").write_text(staff_client.get(f"/api/runs/{resp.json()['id']}/").content.decode())
    make_user("anna", "annotator")
    make_user("bob", "annotator")
    return resp.json()["id"]


def test_review_in_the_browser(glint_run, live_server):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    url, run_id = live_server.url, glint_run
    seen = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS + ["--no-first-run"])
        try:
            anna = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
            anna.set_default_timeout(30_000)
            anna.on("dialog", lambda d: d.accept())
            login(anna, url, "anna")
            # home: datasets, runs, recognizers
            anna.wait_for_selector(f"#runs tr[data-run='{run_id}'][data-state=succeeded]")
            anna.wait_for_selector("#recognizers tr[data-recognizer]")
            anna.wait_for_selector("#datasets tr[data-dataset]")
            assert anna.locator("#start-run").count() == 0  # annotators do not start runs
            shot(anna, "home", full=True)

            # the report: counts and both figures drawn from the stored numbers
            anna.click(f"#runs tr[data-run='{run_id}'] a")
            anna.wait_for_selector("body[data-ready=report]")
            shot(anna, "report", full=True)
            for fig in ("fig3", "fig4c"):
                assert anna.locator(f"#{fig} svg.plot rect").count() > 5, fig
                assert anna.locator(f"#{fig} svg.plot polyline.curve").count() >= 1, fig
                assert anna.locator(f"#{fig} svg.plot line[data-threshold=otsu]").count() == 1, fig
            assert anna.locator("#fig3 polyline[data-curve=disjoint]").count() == 1
            assert anna.locator("#fig3 polyline[data-curve=overlap]").count() == 1
            assert anna.locator("#fig3 line.threshold").count() == 3  # Otsu and both Weibull thresholds
            assert anna.locator("#fig4c polyline[data-curve=wrong]").count() == 1
            assert int(anna.inner_text("dd[data-count=clusters]")) > 10
            assert "clustering" in anna.inner_text("#metrics")
            shot(anna, "report", full=True)

            # the queue, filtered to clusters of 5 faces or more
            anna.click("#to-queue")
            anna.wait_for_selector("body[data-ready=queue]")
            anna.fill("input[name=min_size]", "5")
            anna.dispatch_event("#queue-filters", "change")
            anna.wait_for_function("() => location.search.includes('min_size=5')")
            anna.wait_for_selector("#queue[data-loaded*='min_size=5']", state="attached")
            anna.click("h1")  # leave the input: the queue's keys work outside fields
            anna.wait_for_selector("#queue tbody tr[data-cluster]")
            sizes = [int(x) for x in anna.locator("#queue tbody tr[data-cluster] td:nth-child(4)").all_inner_texts()]
            assert min(sizes) >= 5
            sums = [float(x) for x in anna.locator("#queue tbody tr[data-cluster] td:nth-child(5)").all_inner_texts()]
            maxes = [float(x) for x in anna.locator("#queue tbody tr[data-cluster] td:nth-child(6)").all_inner_texts()]
            assert all(s >= m - 0.005 for s, m in zip(sums, maxes))  # expected wrong (sum of p-) >= max p-
            shot(anna, "queue")
            anna.keyboard.press("j")
            first = anna.get_attribute("#queue tbody tr.cursor", "data-cluster")
            anna.keyboard.press("Enter")
            anna.wait_for_selector("body[data-ready=cluster]")
            cid = int(first)
            assert anna.url.endswith(f"/clusters/{cid}/")
            anna.wait_for_function(
                "() => [...document.querySelectorAll('#faces img')].slice(0, 6)"
                ".every(i => i.complete && i.naturalWidth > 0)")
            anna.wait_for_selector("#merges li[data-cluster]")
            pms = [float(x) for x in anna.eval_on_selector_all("#faces .face .pm", "els => els.map(e => e.dataset.p)")]
            assert pms == sorted(pms, reverse=True)  # most doubtful first
            seen["size0"] = anna.locator("#faces .face").count()

            # a second annotator opens the same cluster: told who has it, read-only
            bob = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
            bob.set_default_timeout(30_000)
            login(bob, url, "bob")
            bob.goto(f"{url}/clusters/{cid}/")
            bob.wait_for_selector("[data-testid=lease-msg]:not([hidden])")
            assert "anna is reviewing" in bob.inner_text("[data-testid=lease-msg]")
            bob.keyboard.press("c")
            bob.wait_for_selector("[data-testid=msg]:not([hidden])")
            assert "anna" in bob.inner_text("[data-testid=msg]")
            shot(bob, "lease")

            # help overlay
            anna.keyboard.press("?")
            anna.wait_for_selector("#help:not([hidden])")
            shot(anna, "help")
            anna.keyboard.press("Escape")

            # reject the most doubtful face with the keyboard: it has the focus; x selects, r rejects
            seen["rejected"] = int(anna.get_attribute("#faces .face.focus", "data-rf"))
            anna.keyboard.press("x")
            anna.wait_for_selector("#sel-count:has-text('1 selected')")
            anna.keyboard.press("r")
            anna.wait_for_selector("[data-testid=msg]:has-text('Rejected 1 face')")
            assert anna.locator(f".face[data-rf='{seen['rejected']}']").count() == 0

            # source photo with its box
            anna.keyboard.press("o")
            anna.wait_for_selector("#photo:not([hidden]) #photo-rect:not([hidden])")
            shot(anna, "photo")
            anna.keyboard.press("Escape")

            # move one face (mouse selection) to the first suggested cluster
            seen["moved"] = int(anna.get_attribute("#faces .face >> nth=0", "data-rf"))
            anna.click("#faces .face >> nth=0")
            anna.keyboard.press("1")
            seen["target"] = int(anna.input_value("#target-input"))
            shot(anna, "cluster")
            anna.keyboard.press("m")
            anna.wait_for_selector("[data-testid=msg]:has-text('Moved 1 face')")

            # merge the second suggestion in, then undo it
            anna.wait_for_selector("#merges li[data-cluster] >> nth=1")
            anna.keyboard.press("2")
            seen["merged"] = int(anna.input_value("#target-input"))
            anna.keyboard.press("g")
            anna.wait_for_selector("[data-testid=msg]:has-text('Merged cluster')")
            anna.keyboard.press("u")
            anna.wait_for_selector("[data-testid=msg]:has-text('Undone: merged')")
            anna.wait_for_function(f"() => document.querySelectorAll('#faces .face').length === {seen['size0'] - 2}")

            # shift-click a range, select all, clear: selection works; then confirm with a name
            anna.click("#faces .face >> nth=0")
            anna.click("#faces .face >> nth=2", modifiers=["Shift"])
            assert anna.inner_text("#sel-count") == "3 selected"
            anna.keyboard.press("a")
            assert anna.inner_text("#sel-count") == f"{seen['size0'] - 2} selected"
            anna.keyboard.press("Escape")
            anna.keyboard.press("Shift+C")
            anna.keyboard.type("Person A")
            anna.keyboard.press("Enter")
            anna.wait_for_selector("[data-testid=msg]:has-text('Confirmed cluster')")
            anna.wait_for_selector("#history li[data-kind=confirm]")
            shot(anna, "cluster-done")

            # undo history survives a reload
            anna.reload()
            anna.wait_for_selector("body[data-ready=cluster]")
            anna.wait_for_selector("#history li[data-kind=merge] .undone")
            # back to the queue: still filtered, the last opened cluster marked
            anna.click("#back-to-queue")
            anna.wait_for_selector("body[data-ready=queue]")
            assert "min_size=5" in anna.url
            seen["pending_after"] = anna.locator(f"#queue tr[data-cluster='{cid}']").count()
        finally:
            browser.close()

    from facecurate.runs.models import Cluster, PipelineRun, ReviewAction, RunFace

    run = PipelineRun.objects.get(pk=run_id)
    c = Cluster.objects.get(pk=cid)
    assert (c.review_state, c.name, c.reviewed_by.username) == ("confirmed", "Person A", "anna")
    assert c.size == seen["size0"] - 2
    rej = RunFace.objects.get(pk=seen["rejected"])
    assert rej.cluster_id is None and rej.excluded == "rejected" and rej.original_cluster_id == cid
    assert RunFace.objects.get(pk=seen["moved"]).cluster_id == seen["target"]
    merged = Cluster.objects.get(pk=seen["merged"])
    assert merged.size > 0 and merged.review_state == "pending"  # the merge was undone
    acts = list(ReviewAction.objects.filter(run=run).order_by("id").values_list("kind", "user__username", "undone_at"))
    assert [(k, u) for k, u, _ in acts] == [("reject", "anna"), ("move", "anna"), ("merge", "anna"),
                                            ("confirm", "anna")]
    assert [bool(x) for *_, x in acts] == [False, False, True, False]
    assert Cluster.objects.filter(run=run, review_state="confirmed").count() == 1
    assert seen["pending_after"] == 0  # confirmed: out of the pending queue
    assert_consistent(run)


def test_home_staff_start_run_cancel_rerun_and_recoveries(worker, live_server):
    """Staff start a run from the home page and watch it finish; a job the sweeper requeued says so; a
    failed run offers re-run, a queued one cancel."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from django.utils import timezone

    from facecurate.jobs.models import Job
    from facecurate.recognition.services.versions import active_version
    from facecurate.runs.models import PipelineRun

    make_user("stella", "staff")
    rows = np.flatnonzero(np.isin(reference_features("att").labels, [f"s{i}" for i in range(1, 11)]))
    featured_dataset("att-ten", "att", rows, labeled=False)
    old = featured_dataset("att-old", "att", rows[:20], labeled=False)
    job = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, dataset=old, state=Job.State.FAILED, error="boom\ntrace",
                             recoveries=1, events=[{"at": timezone.now().isoformat(), "what": "requeued: worker "
                                                    "stopped beating", "worker": "gpu-worker-7"}])
    PipelineRun.objects.create(job=job, unlabeled_dataset=old, recognizer=active_version())
    waiting_ds = featured_dataset("att-waiting", "att", rows[20:40], labeled=False)
    waiting = Job.objects.create(kind=Job.Kind.PIPELINE_RUN, dataset=waiting_ds)  # queued, never sent to a worker
    PipelineRun.objects.create(job=waiting, unlabeled_dataset=waiting_ds, recognizer=active_version())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS + ["--no-first-run"])
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(60_000)
            login(page, live_server.url, "stella")
            page.wait_for_selector("#runs [data-testid=recovered]")
            assert "recovered after a worker died" in page.inner_text("#runs [data-testid=recovered]")
            assert "gpu-worker-7" in page.inner_text("#runs [data-testid=recovered]")
            assert page.locator(f"#runs button[data-rerun='{job.pk}']").count() == 1
            page.click(f"#runs button[data-cancel='{waiting.pk}']")
            page.wait_for_selector(f"#runs button[data-rerun='{waiting.pk}']")
            page.wait_for_selector("#start-run select[name=unlabeled_dataset] option", state="attached")
            page.select_option("#start-run select[name=unlabeled_dataset]", label="att-ten")
            page.click("#start-run button[type=submit]")
            page.wait_for_selector("#runs tr[data-state=succeeded]", timeout=120_000)
            assert page.inner_text("#start-run-error") == ""
            page.wait_for_function("() => document.querySelector('#runs tr[data-state=succeeded] td:nth-child(6)')"
                                   ".textContent !== '–'")
            shot(page, "home-staff", full=True)
        finally:
            browser.close()
    assert Job.objects.get(pk=waiting.pk).state == "cancelled"
    run = PipelineRun.objects.exclude(job__in=[job, waiting]).get()
    assert run.unlabeled_dataset.name == "att-ten" and run.created_by.username == "stella"
    assert run.job.state == "succeeded"
