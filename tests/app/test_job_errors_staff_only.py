"""A job's error traceback is for staff; annotators see its first line, the message (issue 17 item 12)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

ERROR = 'ValueError: bad crop\nTraceback (most recent call last):\n  File "/srv/facecurate/x.py", line 3, in f\n'


def test_job_error_traceback_is_staff_only(annotator_client, staff_client):
    from facecurate.jobs.models import Job

    job = Job.objects.create(kind=Job.Kind.INGEST_UPLOAD, state="failed", error=ERROR)
    for url in (f"/api/jobs/{job.pk}/", "/api/jobs/"):
        body = annotator_client.get(url).json()
        seen = body if "error" in body else body["results"][0]
        assert seen["error"] == "ValueError: bad crop"
        body = staff_client.get(url).json()
        seen = body if "error" in body else body["results"][0]
        assert seen["error"] == ERROR
