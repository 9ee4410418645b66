"""Recognizer versions: the active one, its embedder (cached per process), promotion."""
from __future__ import annotations

import threading

from django.db import transaction

from ..models import RecognizerVersion
from .artifacts import artifact_path

_EMBEDDERS: dict[tuple[int, str], object] = {}
_LOCK = threading.Lock()


def active_version() -> RecognizerVersion:
    """The active version; the bundled SFace is made active when there is none."""
    version = RecognizerVersion.objects.filter(is_active=True).first()
    if version is not None:
        return version
    with transaction.atomic():
        version, _ = RecognizerVersion.objects.get_or_create(
            name="sface", defaults={"kind": RecognizerVersion.Kind.ONNX, "config": {"embedder": "sface", "dim": 128}})
        if not RecognizerVersion.objects.filter(is_active=True).exists():
            RecognizerVersion.objects.filter(pk=version.pk).update(is_active=True)
    return RecognizerVersion.objects.get(is_active=True)


def promote(version: RecognizerVersion) -> RecognizerVersion:
    """Make ``version`` the active one; exactly one stays active (the swap is one transaction)."""
    with transaction.atomic():
        list(RecognizerVersion.objects.select_for_update().filter(is_active=True))
        RecognizerVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        RecognizerVersion.objects.filter(pk=version.pk).update(is_active=True)
    version.refresh_from_db()
    return version


def embedder_for(version: RecognizerVersion, device: str = "cpu"):
    """The pipeline Embedder of a version (crops in, L2-normalised features out)."""
    from pipeline.recognition.models import make_embedder

    key = (version.pk, device)
    with _LOCK:
        if key not in _EMBEDDERS:
            if version.kind == RecognizerVersion.Kind.CHECKPOINT:
                _EMBEDDERS[key] = make_embedder(checkpoint=artifact_path(version.path), device=device)
            else:
                _EMBEDDERS[key] = make_embedder(onnx_model=version.path or None, device=device)
        return _EMBEDDERS[key]
