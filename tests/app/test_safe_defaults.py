"""`make run`'s defaults are safe: debug off, a private random secret key, secure cookies and HSTS
behind FACECURATE_HTTPS, no secrets in the log, bounded pages, the import folder ready."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from facecurate.datasets.models import Dataset, Identity

ROOT = Path(__file__).resolve().parents[2]
OLD_FIXED_KEY = "facecurate-insecure-development-key-only-for-debug"

PRINT_SETTINGS = """
import json, facecurate.settings as s
print(json.dumps({k: getattr(s, k) for k in (
    "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS", "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER")} | {
    "IMPORT_ROOT": str(s.IMPORT_ROOT), "CACHE": s.CACHES["default"]["BACKEND"]}))
"""


def _settings(var_dir: Path, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FACECURATE_")}
    clean.update(env, FACECURATE_VAR_DIR=str(var_dir), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", PRINT_SETTINGS], cwd=ROOT, env=clean, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_embedded_default_is_not_debug_and_keeps_a_private_random_key(tmp_path):
    first = _settings(tmp_path)
    assert first["DEBUG"] is False
    assert first["SECRET_KEY"] != OLD_FIXED_KEY and len(first["SECRET_KEY"]) >= 50
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == first["SECRET_KEY"]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".secret_key")]  # no temp file left
    assert _settings(tmp_path)["SECRET_KEY"] == first["SECRET_KEY"]  # made once, then kept
    assert _settings(tmp_path / "other")["SECRET_KEY"] != first["SECRET_KEY"]  # random per checkout
    assert _settings(tmp_path, FACECURATE_SECRET_KEY="k" * 50)["SECRET_KEY"] == "k" * 50
    assert {"localhost", "127.0.0.1"} <= set(first["ALLOWED_HOSTS"])
    assert Path(first["IMPORT_ROOT"]) == tmp_path / "import" and (tmp_path / "import").is_dir()
    assert first["CACHE"].endswith("FileBasedCache")  # shared by gunicorn's worker processes
    assert _settings(tmp_path, FACECURATE_DEBUG="1")["DEBUG"] is True


def test_https_switch(tmp_path):
    plain = _settings(tmp_path)
    assert not plain["SESSION_COOKIE_SECURE"] and not plain["SECURE_SSL_REDIRECT"] and plain["SECURE_HSTS_SECONDS"] == 0
    https = _settings(tmp_path, FACECURATE_HTTPS="1")
    assert https["SESSION_COOKIE_SECURE"] and https["CSRF_COOKIE_SECURE"] and https["SECURE_SSL_REDIRECT"]
    assert https["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert https["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


@pytest.mark.django_db
def test_ensureadmin_keeps_secrets_out_of_the_log(capsys, monkeypatch, settings):
    from rest_framework.authtoken.models import Token

    monkeypatch.delenv("FACECURATE_ADMIN_PASSWORD", raising=False)
    call_command("ensureadmin")
    out = capsys.readouterr().out
    token = Token.objects.get(user__username="admin").key
    assert token not in out
    path = Path(settings.ADMIN_PASSWORD_FILE)
    assert str(path) in out and stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 1, "the file holds the password alone (README: sign in as admin with it)"
    password = lines[0]
    assert "'admin'" in out and password not in out
    assert APIClient().login(username="admin", password=password)


@pytest.mark.django_db
def test_limit_is_capped(annotator_client, settings):
    ds = Dataset.objects.create(name="many", kind="labeled")
    Identity.objects.bulk_create([Identity(dataset=ds, name=f"p{i:04d}") for i in range(520)])
    body = annotator_client.get("/api/identities/?limit=100000").json()
    assert body["count"] == 520 and len(body["results"]) == settings.MAX_PAGE_SIZE == 500
    assert len(annotator_client.get("/api/identities/?limit=7").json()["results"]) == 7


@pytest.mark.django_db
@pytest.mark.parametrize("url,query", [(u, q) for u in ("/api/identities/", "/api/runs/")
                                        for q in ("limit=-5", "limit=0", "limit=ten", "offset=-1")]
                         + [("/api/faces/", q) for q in ("limit=-5", "limit=0", "limit=ten")])
def test_a_bad_limit_is_refused_not_taken_silently(annotator_client, url, query):
    resp = annotator_client.get(f"{url}?{query}")
    assert resp.status_code == 400, resp.content
    assert query.split("=")[0] in resp.json()["detail"] or query.split("=")[0] in str(resp.json())


@pytest.mark.django_db
def test_error_pages_list_no_urls(client):
    page = client.get("/no/such/page/")
    assert page.status_code == 404 and len(page.content) < 2000
    assert b"api/datasets" not in page.content and b"urlpatterns" not in page.content.lower()
