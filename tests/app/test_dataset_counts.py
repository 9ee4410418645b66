"""Maintained dataset counts (issue 18): database triggers keep ``DatasetCounts`` equal to counting the
rows, through bulk inserts, status changes, deletes (cascades included) and identities; the datasets
list reads them instead of counting every image per request."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.app.test_list_query_counts import _fill

pytestmark = pytest.mark.django_db


def _check(*datasets):
    from facecurate.datasets.services.counts import count_rows, dataset_counts

    ids = [d.pk for d in datasets]
    assert dataset_counts(ids) == count_rows(ids)


def test_counts_follow_every_write():
    from facecurate.datasets.models import Dataset, DatasetCounts, Face, Identity, Image

    a, b = _fill(40, "a"), _fill(25, "b")
    _check(a, b)
    assert DatasetCounts.objects.get(dataset=a).faces == 2 * sum(1 for i in range(40) if i % 7)
    Image.objects.filter(dataset=a, status="no_face").update(status="error")  # one UPDATE statement
    im = Image.objects.filter(dataset=a, status="ok").first()
    im.status = "pending"
    im.save()  # a full save, as ingestion does
    _check(a, b)
    Image.objects.filter(dataset=a, pk__in=list(Image.objects.filter(dataset=a).values_list("pk", flat=True)[:9])) \
        .delete()  # faces go with their images (cascade)
    Face.objects.filter(dataset=b, index=1).delete()
    Identity.objects.create(dataset=b, name="newcomer")
    _check(a, b)
    Image.objects.filter(dataset=b).delete()
    Identity.objects.filter(dataset=b).delete()
    _check(a, b)
    assert DatasetCounts.objects.get(dataset=b).faces == 0
    empty = Dataset.objects.create(name="empty", kind="unlabeled")
    _check(a, empty)
    a.delete()
    assert not DatasetCounts.objects.filter(dataset_id=a.pk).exists()
    _check(b, empty)


def test_counts_of_a_dataset_made_from_features():
    import numpy as np

    from facecurate.datasets.services.from_features import dataset_from_features

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ds = dataset_from_features("feat", [f"p{i % 3}/{i}.png" for i in range(30)], emb,
                               labels=[f"p{i % 3}" for i in range(30)], labeled=True)
    _check(ds)
    assert ds.counts.faces == 30 and ds.counts.identities == 3 and ds.counts.images_ok == 30


def test_datasets_list_does_not_count_rows(annotator_client):
    _fill(30, "q")
    with CaptureQueriesContext(connection) as ctx:
        body = annotator_client.get("/api/datasets/").json()
    assert body["results"][0]["face_count"] == 2 * sum(1 for i in range(30) if i % 7)
    grouped = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()
               and any(t in q["sql"] for t in ('"datasets_image"', '"datasets_face_detection"', '"datasets_identity"'))]
    assert grouped == [], grouped
