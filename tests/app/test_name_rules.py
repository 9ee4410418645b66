"""Names that look the same are the same name: normalised, unique ignoring case, no invisible
characters; provenance is the server's record; free text has size limits."""
from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from facecurate.datasets.models import Dataset, Identity
from facecurate.datasets.services.ingest import IngestError, get_identity
from facecurate.names import BadName, normalize_name
from tests.app.conftest import blank_image_bytes, make_zip, named_file


# --- facecurate.names -------------------------------------------------------------------------------

def test_normalize_name_unit():
    assert normalize_name("  Alice   Smith ") == "Alice Smith"
    assert normalize_name("Ａｌｉｃｅ") == "Alice"  # full-width letters (NFKC)
    assert normalize_name("Alice\u00a0Smith") == "Alice Smith"  # no-break space
    assert normalize_name("ﬁle") == "file"  # ligature
    assert normalize_name("Zoë") == normalize_name("Zoe\u0308")  # composed and decomposed
    assert normalize_name("alice\n") == "alice"  # trimmed at the ends


@pytest.mark.parametrize("bad, code, words", [
    ("al\u200bice", "invisible_character", "zero width space"),
    ("alice\u200f", "invisible_character", "right-to-left mark"),
    ("al\nice", "invisible_character", "control character"),
    ("al\tice", "invisible_character", "control character"),
    ("a\u2028b", "invisible_character", "line separator"),
    ("\ufeffalice", "invisible_character", "u+feff"),
    ("a\u3164b", "invisible_character", "filler"),
    ("   ", "blank", "empty"),
    ("x" * 201, "too_long", "at most 200"),
])
def test_normalize_name_refuses(bad, code, words):
    with pytest.raises(BadName) as err:
        normalize_name(bad)
    assert err.value.code == code and words in err.value.message.lower()


# --- datasets over the API ---------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("twin", ["alice", "ALICE", " Alice ", "Ａlice", "Alice\u200b", "Alice\n", "Ali\u200fce"])
def test_dataset_names_that_look_alike_are_refused(staff_client, twin):
    assert staff_client.post("/api/datasets/", {"name": "Alice", "kind": "labeled"}, format="json").status_code == 201
    resp = staff_client.post("/api/datasets/", {"name": twin, "kind": "labeled"}, format="json")
    assert resp.status_code in (400, 409), resp.content
    body = resp.json()
    assert body["code"] in ("name_taken", "invisible_character") and body["detail"]
    assert Dataset.objects.count() == 1


@pytest.mark.django_db
def test_dataset_name_is_stored_normalised_and_rename_checks_too(staff_client):
    resp = staff_client.post("/api/datasets/", {"name": "  Ｂob   set ", "kind": "unlabeled"}, format="json")
    assert resp.status_code == 201 and resp.json()["name"] == "Bob set"
    other = staff_client.post("/api/datasets/", {"name": "carol", "kind": "unlabeled"}, format="json").json()
    resp = staff_client.patch(f"/api/datasets/{other['id']}/", {"name": "BOB SET"}, format="json")
    assert resp.status_code == 409 and resp.json()["code"] == "name_taken" and "ignoring case" in resp.json()["detail"]
    assert staff_client.patch(f"/api/datasets/{other['id']}/", {"name": "Carol"}, format="json").status_code == 200


@pytest.mark.django_db
def test_database_refuses_case_twins():
    Dataset.objects.create(name="Alice", kind="labeled")
    with pytest.raises(IntegrityError), transaction.atomic():
        Dataset.objects.create(name="alice", kind="labeled")
    ds = Dataset.objects.get()
    Identity.objects.create(dataset=ds, name="Bob")
    with pytest.raises(IntegrityError), transaction.atomic():
        Identity.objects.create(dataset=ds, name="BOB")
    Identity.objects.create(dataset=Dataset.objects.create(name="other", kind="labeled"), name="bob")  # per dataset


@pytest.mark.django_db
def test_provenance_is_read_only(staff_client):
    ds = staff_client.post("/api/datasets/", {"name": "p", "kind": "unlabeled"}, format="json").json()
    staff_client.post(f"/api/datasets/{ds['id']}/upload/", {"files": [named_file("a.png", blank_image_bytes(1))]},
                      format="multipart")
    history = Dataset.objects.get(pk=ds["id"]).provenance
    assert len(history["ingestions"]) == 1
    resp = staff_client.patch(f"/api/datasets/{ds['id']}/", {"provenance": {}}, format="json")
    assert resp.status_code == 200
    assert Dataset.objects.get(pk=ds["id"]).provenance == history


@pytest.mark.django_db
def test_free_text_size_limits(staff_client):
    resp = staff_client.post("/api/datasets/", {"name": "d", "kind": "labeled", "description": "x" * 10_001},
                             format="json")
    assert resp.status_code == 400 and "description" in resp.json()
    assert staff_client.post("/api/datasets/", {"name": "d", "kind": "labeled", "description": "x" * 10_000},
                             format="json").status_code == 201
    assert staff_client.post("/api/datasets/", {"name": "n" * 201, "kind": "labeled"}, format="json").status_code == 400


# --- identities, which come in through ingestion -------------------------------------------------------

@pytest.mark.django_db
def test_get_identity_matches_ignoring_case_and_refuses_invisible():
    ds = Dataset.objects.create(name="people", kind="labeled")
    alice = get_identity(ds, "Alice")
    assert get_identity(ds, "alice") == alice and get_identity(ds, " ALICE ", {}) == alice
    with pytest.raises(IngestError) as err:
        get_identity(ds, "Ali\u200bce")
    assert err.value.code == "bad_identity"
    assert list(Identity.objects.values_list("name", flat=True)) == ["Alice"]


@pytest.mark.django_db
def test_zip_folders_differing_in_case_are_one_identity(staff_client):
    ds = staff_client.post("/api/datasets/", {"name": "z", "kind": "labeled"}, format="json").json()
    archive = make_zip({"alice/1.png": blank_image_bytes(1), "Alice/2.png": blank_image_bytes(2),
                        "Bo\u200bb/3.png": blank_image_bytes(3)})
    resp = staff_client.post(f"/api/datasets/{ds['id']}/upload/", {"files": [named_file("p.zip", archive)]},
                             format="multipart")
    assert resp.status_code == 202, resp.content
    assert [(r["name"], r["code"]) for r in resp.json()["rejected"]] == [("p.zip:Bo\u200bb/3.png", "bad_identity")]
    assert Identity.objects.filter(dataset_id=ds["id"]).count() == 1
