"""Fixtures for the Django app tests.

* Every test gets its own MEDIA_ROOT, IMPORT_ROOT and cache (tmp folders).
* ``worker``: a real Celery worker in a thread, consuming queues ``default`` and ``gpu`` from the
  configured broker (Redis when FACECURATE_BROKER_URL is set, else kombu's filesystem transport in
  a temp folder). Tests that use it need the transactional DB (the worker has its own connection).
* Users with roles and API clients for them.
"""
from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rest_framework.test import APIClient

from tests.conftest import SHARED_DATA, shared_path  # noqa: F401

DEFAULT_QUEUES = ["default", "gpu"]


@pytest.fixture(autouse=True)
def _isolated_files(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.IMPORT_ROOT = tmp_path / "import"
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    (tmp_path / "import").mkdir()
    # Sign-in failure counts start from zero in every test (same backend as the embedded default).
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                                   "LOCATION": str(tmp_path / "cache")}}
    settings.ADMIN_PASSWORD_FILE = tmp_path / "var" / "admin_password"
    yield


@pytest.fixture(scope="session")
def celery_app_for_tests(tmp_path_factory):
    from django.conf import settings

    from facecurate.celery import app

    if settings.CELERY_BROKER_URL.startswith("filesystem"):
        folder = tmp_path_factory.mktemp("broker")
        (folder / "in").mkdir()
        (folder / "processed").mkdir()
        app.conf.broker_transport_options = {
            "data_folder_in": str(folder / "in"),
            "data_folder_out": str(folder / "in"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),  # kombu's default is ./control in the cwd
            "store_processed": False,
            "polling_interval": 0.1,
        }
    else:
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            for queue in DEFAULT_QUEUES:
                try:
                    channel.queue_purge(queue)
                except Exception:  # queue not declared yet
                    pass
    return app


@pytest.fixture(scope="session")
def _session_worker(celery_app_for_tests, django_db_setup, django_db_blocker):
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        celery_app_for_tests,
        pool="solo",
        concurrency=1,
        perform_ping_check=False,
        shutdown_timeout=60,
        queues=DEFAULT_QUEUES,
        loglevel="WARNING",
    ) as worker:
        yield worker


@pytest.fixture
def worker(_session_worker, transactional_db):
    """The running Celery worker (needs the transactional DB so it sees committed rows)."""
    return _session_worker


def wait_for_job(job_id, timeout: float = 120.0):
    """Poll the DB until the job reaches a terminal state; returns the job."""
    from facecurate.jobs.models import Job

    deadline = time.monotonic() + timeout
    while True:
        job = Job.objects.get(pk=job_id)
        if job.is_terminal:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.state} ({job.stage} {job.progress_current}/"
                                 f"{job.progress_total}) after {timeout} s")
        time.sleep(0.1)


# --- users and clients --------------------------------------------------------------------------


def make_user(username: str, role: str | None, password: str = "correct-horse-1"):
    from django.contrib.auth import get_user_model

    from facecurate.accounts.roles import create_user

    if role is None:
        return get_user_model().objects.create_user(username, password=password), None
    return create_user(username, role=role, password=password)


@pytest.fixture
def staff_user(db):
    return make_user("stella", "staff")[0]


@pytest.fixture
def annotator_user(db):
    return make_user("anna", "annotator")[0]


@pytest.fixture
def staff_client(staff_user):
    from rest_framework.authtoken.models import Token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=staff_user).key}")
    return client


@pytest.fixture
def annotator_client(annotator_user):
    from rest_framework.authtoken.models import Token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=annotator_user).key}")
    return client


@pytest.fixture
def make_dataset(staff_client):
    def make(name="set", kind="unlabeled", aligned=False):
        resp = staff_client.post("/api/datasets/", {"name": name, "kind": kind, "aligned": aligned}, format="json")
        assert resp.status_code == 201, resp.content
        return resp.json()

    return make


# --- image bytes ----------------------------------------------------------------------------------


def real_face_paths(n: int = 4) -> list[Path]:
    """``n`` LFW images of different people (each has one clear face)."""
    root = shared_path("lfw", "images_deepfunneled")
    names = ["Aaron_Eckhart", "Abba_Eban", "Abdullah_Gul", "Adam_Sandler", "Al_Gore", "Alan_Greenspan",
             "Ann_Veneman", "Ari_Fleischer"]
    out = []
    for name in names[:n]:
        out.append(sorted((root / name).glob("*.jpg"))[0])
    return out


def encode(img: np.ndarray | Image.Image, fmt: str = "PNG") -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def blank_image_bytes(seed: int = 0, size=(64, 48)) -> bytes:
    """A valid image with no face (random noise, different per seed)."""
    rng = np.random.default_rng(seed)
    return encode(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def named_file(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def make_zip(entries: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777) << 16
            zf.writestr(info, target)
    return buf.getvalue()
