"""Model rules: per-dataset de-duplication, identities that cannot vanish under their faces."""
import pytest
from django.db import IntegrityError, transaction
from django.db.models import RestrictedError

from facecurate.datasets.models import Dataset, Identity, Image

pytestmark = pytest.mark.django_db


def _face(ds, sha, identity=None):
    return Image.objects.create(dataset=ds, identity=identity, source_name=f"{sha}.png", file=f"x/{sha}.png",
                               sha256=sha * 64, size_bytes=1)


def test_sha256_unique_per_dataset():
    a = Dataset.objects.create(name="a", kind="unlabeled")
    b = Dataset.objects.create(name="b", kind="unlabeled")
    _face(a, "1")
    _face(b, "1")  # same image in another dataset is fine
    with pytest.raises(IntegrityError), transaction.atomic():
        _face(a, "1")


def test_identity_with_faces_cannot_be_deleted_but_dataset_can():
    ds = Dataset.objects.create(name="lab", kind="labeled")
    ident = Identity.objects.create(dataset=ds, name="Ann")
    _face(ds, "2", ident)
    with pytest.raises(RestrictedError):
        ident.delete()
    ds.delete()
    assert not Image.objects.exists() and not Identity.objects.exists()
    with pytest.raises(IntegrityError), transaction.atomic():
        Identity.objects.create(dataset=Dataset.objects.create(name="x", kind="labeled"), name="B")
        Identity.objects.create(dataset=Dataset.objects.get(name="x"), name="B")
