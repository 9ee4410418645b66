"""Anonymous requests get 401/403 and never data; annotators read; staff ingest; tokens and sessions work."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from facecurate.datasets.models import Dataset
from tests.app.conftest import make_user

pytestmark = pytest.mark.django_db

API_READS = ["/api/datasets/", "/api/faces/", "/api/jobs/", "/api/identities/"]


@pytest.fixture
def dataset(staff_user):
    return Dataset.objects.create(name="secret-set", kind="unlabeled", created_by=staff_user)


def test_anonymous_gets_401_and_no_data(dataset):
    client = APIClient()
    for url in API_READS + [f"/api/datasets/{dataset.id}/"]:
        resp = client.get(url)
        assert resp.status_code == 401, url
        assert b"secret-set" not in resp.content
        assert resp["WWW-Authenticate"].startswith("Token")
    assert client.post("/api/datasets/", {"name": "x", "kind": "labeled"}, format="json").status_code == 401
    assert client.post(f"/api/datasets/{dataset.id}/upload/", {}, format="multipart").status_code == 401
    assert client.get("/media/datasets/1/raw/x.png").status_code == 401


def test_bad_token_is_401(dataset):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get("/api/datasets/").status_code == 401


def test_user_without_role_is_403(dataset):
    user, _ = make_user("norole", None)
    client = APIClient()
    client.force_authenticate(user)
    assert client.get("/api/datasets/").status_code == 403
    client.login(username="norole", password="correct-horse-1")
    assert client.get("/").status_code == 403


def test_annotator_reads_but_cannot_ingest(annotator_client, dataset):
    resp = annotator_client.get("/api/datasets/")
    assert resp.status_code == 200
    assert [d["name"] for d in resp.json()["results"]] == ["secret-set"]
    assert annotator_client.post("/api/datasets/", {"name": "x", "kind": "labeled"}, format="json").status_code == 403
    assert annotator_client.post(f"/api/datasets/{dataset.id}/upload/", {}, format="multipart").status_code == 403
    assert annotator_client.post(f"/api/datasets/{dataset.id}/import/", {"path": "x"}, format="json").status_code == 403
    assert annotator_client.patch(f"/api/datasets/{dataset.id}/", {"description": "d"}, format="json").status_code == 403


def test_staff_creates_dataset(staff_client):
    resp = staff_client.post(
        "/api/datasets/", {"name": "lfw", "kind": "labeled", "provenance": {"source": "LFW"}}, format="json"
    )
    assert resp.status_code == 201, resp.content
    body = resp.json()
    # provenance is the server's ingestion record: what a client sends for it is ignored.
    assert body["kind"] == "labeled" and body["created_by"] == "stella" and body["provenance"] == {}
    assert staff_client.post("/api/datasets/", {"name": "bad", "kind": "weird"}, format="json").status_code == 400


def test_token_endpoint_and_session_login(staff_user):
    client = APIClient()
    resp = client.post("/api/auth/token/", {"username": "stella", "password": "correct-horse-1"}, format="json")
    assert resp.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {resp.json()['token']}")
    assert client.get("/api/jobs/").status_code == 200

    browser = APIClient(enforce_csrf_checks=True)
    assert browser.get("/").status_code == 302  # to the login page
    page = browser.get("/login/")
    assert page.status_code == 200 and b"Sign in" in page.content
    csrf = page.cookies["csrftoken"].value
    resp = browser.post("/login/", {"username": "stella", "password": "correct-horse-1",
                                    "csrfmiddlewaretoken": csrf})
    assert resp.status_code == 302
    assert browser.get("/api/datasets/").status_code == 200
    # Session-authenticated writes need the CSRF token.
    assert browser.post("/api/datasets/", {"name": "x", "kind": "labeled"}, format="json").status_code == 403


def test_wrong_password_stays_on_login(staff_user):
    client = APIClient()
    resp = client.post("/login/", {"username": "stella", "password": "nope-nope"})
    assert resp.status_code == 200 and b"Wrong user name or password" in resp.content


def test_createuser_and_ensureadmin_commands(capsys, monkeypatch):
    call_command("createuser", "rev", "--role", "annotator", "--password", "long-enough-1")
    out = capsys.readouterr().out
    assert "user rev role annotator token " in out
    token = out.strip().rsplit(" ", 1)[1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/datasets/").status_code == 200

    monkeypatch.setenv("FACECURATE_ADMIN_PASSWORD", "admin-pass-123")
    call_command("ensureadmin")
    out = capsys.readouterr().out
    assert "created admin user 'admin'" in out and "admin-pass-123" not in out
    assert APIClient().login(username="admin", password="admin-pass-123")
    call_command("ensureadmin")
    assert "nothing to do" in capsys.readouterr().out


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def test_media_needs_a_role_and_stays_inside_media_root(annotator_client, settings):
    settings.MEDIA_ROOT.mkdir(parents=True, exist_ok=True)
    (settings.MEDIA_ROOT / "ok.txt").write_text("fine")
    (settings.MEDIA_ROOT.parent / "secret.txt").write_text("secret")
    assert annotator_client.get("/media/ok.txt").status_code == 200
    for url in ("/media/../secret.txt", "/media/%2E%2E/secret.txt", "/media/..%2Fsecret.txt"):
        resp = annotator_client.get(url)
        assert resp.status_code == 404, url
    user, _ = make_user("norole2", None)
    client = APIClient()
    client.force_login(user)
    assert client.get("/media/ok.txt").status_code == 403
