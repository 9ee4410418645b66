"""The OpenAPI schema: committed file is fresh, served at /api/schema/, docs pages work offline."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.management import call_command

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "facecurate" / "openapi.yaml"
REGENERATE = "PYTHONPATH=. .venv/bin/python manage.py spectacular --file facecurate/openapi.yaml --validate"


def test_committed_schema_is_fresh(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(out), "--validate", "--fail-on-warn")
    assert SCHEMA_FILE.read_text() == out.read_text(), f"facecurate/openapi.yaml is stale; run: {REGENERATE}"


def test_schema_lists_the_ingestion_api():
    text = SCHEMA_FILE.read_text()
    for path in ("/api/datasets/{id}/upload/", "/api/datasets/{id}/import/", "/api/datasets/{id}/manifest/",
                 "/api/jobs/{id}/", "/api/faces/"):
        assert f"  {path}:" in text
    assert "multipart/form-data" in text and "'202':" in text
    assert "tokenAuth" in text and "cookieAuth" in text


def test_schema_names_the_busy_dataset_answer_of_every_ingestion():
    import yaml

    doc = yaml.safe_load(SCHEMA_FILE.read_text())
    for path in ("/api/datasets/{id}/upload/", "/api/datasets/{id}/import/", "/api/datasets/{id}/manifest/"):
        answer = doc["paths"][path]["post"]["responses"].get("409")
        assert answer, f"{path}: no 409 (dataset in use by an unfinished run) in the schema"
        ref = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert set(doc["components"]["schemas"][ref]["properties"]) == {"detail", "code"}


@pytest.mark.django_db
def test_schema_and_docs_served_without_cdn(client):
    resp = client.get("/api/schema/")
    assert resp.status_code == 200 and b"openapi: 3" in resp.content
    for url in ("/api/docs/", "/api/redoc/"):
        page = client.get(url)
        assert page.status_code == 200
        html = page.content.decode()
        assert "cdn." not in html and "unpkg" not in html and "jsdelivr" not in html
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
        assert assets, html
        for asset in assets:
            got = client.get(asset)
            assert got.status_code == 200, asset
            b"".join(got.streaming_content) if hasattr(got, "streaming_content") else got.content
