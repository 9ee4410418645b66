"""Every API failure answers JSON {"detail", "code"}, short, with no debug page; other pages short HTML."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from facecurate.rest import json_depth

pytestmark = pytest.mark.django_db


def _is_error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.content[:300]
    assert resp["Content-Type"].startswith("application/json"), resp["Content-Type"]
    assert len(resp.content) < 4000
    body = resp.json()
    assert isinstance(body["detail"], str) and body["detail"] and isinstance(body["code"], str)
    if code is not None:
        assert body["code"] == code, body
    return body


def test_unknown_api_url_is_json_404(staff_client):
    _is_error(staff_client.get("/api/no-such-thing/"), 404, "not_found")
    _is_error(staff_client.get("/api/datasets/999999/"), 404, "not_found")


def test_wrong_method_is_json_405(staff_client):
    _is_error(staff_client.delete("/api/datasets/"), 405, "method_not_allowed")


def test_auth_errors_are_json(staff_user):
    _is_error(APIClient().get("/api/datasets/"), 401, "not_authenticated")


def test_malformed_and_too_deep_json_is_400(staff_client):
    resp = staff_client.post("/api/datasets/", "{not json", content_type="application/json")
    _is_error(resp, 400, "parse_error")
    deep = "[" * 100_000 + "]" * 100_000  # today: RecursionError, a 500 with a 139 KB debug page
    _is_error(staff_client.post("/api/datasets/", deep, content_type="application/json"), 400, "too_deep")
    _is_error(staff_client.post("/api/datasets/1/manifest/", {"entries": deep}, format="json"), 404)
    body = '{"entries": ' + "[" * 65 + "]" * 65 + "}"
    _is_error(staff_client.post("/api/datasets/", body, content_type="application/json"), 400, "too_deep")
    _is_error(staff_client.post("/api/datasets/", "[NaN]", content_type="application/json"), 400, "parse_error")


def test_json_depth_counts_brackets_outside_strings():
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{"}]}', 64) == 3
    assert json_depth(b'"\\"[[["', 64) == 0
    assert json_depth(b"[" * 1000, 64) == 65  # stops counting past the limit


def test_json_body_over_the_memory_limit_is_413(staff_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"name": "' + "x" * 2000 + '", "kind": "labeled"}'
    _is_error(staff_client.post("/api/datasets/", body, content_type="application/json"), 413, "request_too_large")


def test_validation_errors_keep_fields_and_add_detail(staff_client):
    body = _is_error(staff_client.post("/api/datasets/", {"kind": "weird"}, format="json"), 400)
    assert body["detail"].startswith("name: ") and body["name"] and body["kind"]


def test_uncaught_error_is_json_500_under_api_and_short_html_elsewhere(staff_user, monkeypatch):
    from facecurate.datasets.api import DatasetViewSet
    from facecurate.web import views

    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(DatasetViewSet, "list", boom)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(staff_user)
    body = _is_error(client.get("/api/datasets/"), 500, "server_error")
    assert "secret internals" not in str(body)
    monkeypatch.setattr(views, "render", boom)
    client.force_login(staff_user)
    page = client.get("/")
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html") and len(page.content) < 2000
    assert b"secret internals" not in page.content


def test_bad_host_is_json_400_for_the_api(staff_client):
    _is_error(staff_client.get("/api/datasets/", HTTP_HOST="evil.example"), 400, "bad_host")
    page = APIClient().get("/login/", HTTP_HOST="evil.example")
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")


def test_pages_outside_the_api_get_short_html(client):
    page = client.get("/no/such/page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html") and len(page.content) < 2000
