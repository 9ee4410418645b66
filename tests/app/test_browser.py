"""The browser UI end to end: sign in, create a dataset, upload, watch the job, see the thumbnails."""
from __future__ import annotations

import os
import time

import pytest

from tests.app.conftest import blank_image_bytes, make_user, real_face_paths

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]


@pytest.fixture
def staff_login(worker):
    """Made before the browser starts: Playwright's sync API runs an event loop in this thread, and
    ORM calls under it would open a second, never-closed database connection (so none are made)."""
    make_user("stella", "staff")
    return "stella", "correct-horse-1"


@pytest.fixture
def page(staff_login):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def test_login_upload_and_watch_progress(worker, live_server, staff_login, page, tmp_path):
    faces = real_face_paths(2)
    noise = tmp_path / "noise.png"
    noise.write_bytes(blank_image_bytes(300))

    page.goto(live_server.url + "/")
    assert page.url.startswith(live_server.url + "/login/")
    page.fill("input[name=username]", "stella")
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Wrong user name or password")
    page.fill("input[name=username]", "stella")
    page.fill("input[name=password]", "correct-horse-1")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=who]")
    assert "stella (staff)" in page.inner_text("[data-testid=who]")
    page.wait_for_selector("#datasets >> text=No datasets yet.")
    assert "First steps: create a dataset" in page.inner_text("[data-testid=first-steps]")  # what to do first

    page.fill("#new-dataset input[name=name]", "browser set")
    page.click("#new-dataset button[type=submit]")
    page.wait_for_url("**/datasets/*/")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    page.set_input_files("#upload input[name=files]", [str(p) for p in faces] + [str(noise), str(empty)])
    page.click("#upload button[type=submit]")

    page.wait_for_selector("[data-testid=jobs] li[data-state=succeeded]", timeout=90_000)
    page.wait_for_selector("[data-testid=grid] figure[data-status=ok] >> nth=1")
    assert page.locator("[data-testid=grid] figure[data-status=ok]").count() == 2
    assert page.locator("[data-testid=grid] figure[data-status=no_face]").count() == 1
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=grid] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    counts = page.inner_text("[data-testid=counts]")
    assert "3 images (2 with faces, 1 without a face" in counts and "), 2 faces" in counts  # images, then faces
    assert "1 file(s) refused: empty.png (" in page.inner_text("[data-testid=jobs]")  # the refused files named
    page.screenshot(path=str(tmp_path / "dataset-page.png"), full_page=True)  # kept by pytest for a look

    # Two loads of the grid at once (here two filter changes, the slower answer first; in the product the
    # poll's refresh and the upload's) leave one copy of each face, not two (seen: 4 faces shown for 2).
    page.route("**/api/images/**", lambda route: (time.sleep(0.6), route.continue_()))
    page.evaluate("""() => { const s = document.getElementById('status-filter');
        s.value = 'ok'; s.dispatchEvent(new Event('change')); s.value = ''; s.dispatchEvent(new Event('change')); }""")
    page.wait_for_timeout(2500)
    page.unroute("**/api/images/**")
    assert page.locator("[data-testid=grid] figure").count() == 3

    # The API docs page works offline (assets from the sidecar package, not a CDN).
    page.goto(live_server.url + "/api/docs/")
    page.wait_for_selector("text=facecurate API")
