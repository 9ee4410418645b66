"""No favicon 404 on every page (issue 17 item 13): pages name an icon and /favicon.ico leads to it."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_favicon_is_there(client):
    page = client.get("/login/")
    assert b'rel="icon"' in page.content
    resp = client.get("/favicon.ico")
    assert resp.status_code == 301 and resp["Location"].endswith("facecurate/favicon.svg")
    assert client.get(resp["Location"]).status_code == 200
