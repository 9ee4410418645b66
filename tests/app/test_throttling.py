"""Password guessing is bounded: 5 failures for one user name from one address in 15 minutes lock
out the token endpoint, the login form and the admin's login with 429 and Retry-After."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from facecurate.accounts import lockout

pytestmark = pytest.mark.django_db

RIGHT, WRONG = "correct-horse-1", "wrong-guess"


def _token(client, password, username="stella"):
    return client.post("/api/auth/token/", {"username": username, "password": password}, format="json")


def test_token_endpoint_locks_out_after_five_failures(staff_user):
    client = APIClient()
    for _ in range(5):
        resp = _token(client, WRONG)
        assert resp.status_code == 400 and resp.json()["code"]
    resp = _token(client, RIGHT)  # even the right password: no more guesses are checked
    assert resp.status_code == 429
    assert resp.json()["code"] == "throttled" and "try again" in resp.json()["detail"]
    assert 0 < int(resp["Retry-After"]) <= 15 * 60
    assert _token(client, RIGHT, username="STELLA").status_code == 429  # names are matched ignoring case
    other = APIClient(REMOTE_ADDR="10.0.0.9")  # another address is not locked out
    assert _token(other, RIGHT).status_code == 200


def test_login_form_locks_out_too(staff_user):
    client = APIClient()
    for _ in range(5):
        resp = client.post("/login/", {"username": "stella", "password": WRONG})
        assert resp.status_code == 200 and b"Wrong user name or password" in resp.content
    resp = client.post("/login/", {"username": "stella", "password": RIGHT})
    assert resp.status_code == 429 and int(resp["Retry-After"]) > 0
    assert b"Too many failed sign-ins" in resp.content
    assert not client.get("/api/datasets/").status_code == 200  # not signed in
    # The two doors share one count: the token endpoint is locked as well.
    assert _token(client, RIGHT).status_code == 429


def test_success_resets_and_lockout_ends(staff_user, settings, monkeypatch):
    client = APIClient()
    for _ in range(4):
        _token(client, WRONG)
    assert _token(client, RIGHT).status_code == 200  # success clears the count
    for _ in range(4):
        _token(client, WRONG)
    assert _token(client, RIGHT).status_code == 200
    for _ in range(5):
        _token(client, WRONG)
    assert _token(client, RIGHT).status_code == 429
    import time

    later = time.time() + settings.LOGIN_LOCKOUT_SECONDS + 1
    monkeypatch.setattr(lockout.time, "time", lambda: later)
    assert lockout.retry_after("stella", "127.0.0.1") is None
    assert _token(client, RIGHT).status_code == 200


def test_admin_login_checks_no_password_while_locked(staff_user):
    for _ in range(5):
        lockout.record_failure("stella", "127.0.0.1")
    client = APIClient()
    resp = client.post("/admin/login/", {"username": "stella", "password": RIGHT, "next": "/admin/"})
    assert resp.status_code == 200  # the form again: the backend refuses while locked
    assert "_auth_user_id" not in client.session
