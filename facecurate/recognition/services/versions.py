"""Recognizer versions: the active one, its embedder (cached per process), promotion."""
from __future__ import annotations

import threading

from django.db import transaction
from django.utils import timezone

from ..models import RecognizerVersion
from .artifacts import artifact_path

_EMBEDDERS: dict[tuple, object] = {}
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


class PromotionRefused(Exception):
    """A promotion that needs something first: ``status`` 409 (state, verdict) or 400 (override without reason)."""

    def __init__(self, message: str, code: str, status: int = 409) -> None:
        super().__init__(message)
        self.code, self.status = code, status


NEEDS_OVERRIDE = (RecognizerVersion.Verdict.NOT_BETTER, RecognizerVersion.Verdict.UNKNOWN)


def promote(version: RecognizerVersion, *, user=None, override: bool = False, reason: str = "") -> RecognizerVersion:
    """Make ``version`` the active one; exactly one stays active (the swap is one transaction).

    A version still being evaluated, or failed, is never promoted. One whose verdict is ``not_better`` or
    ``unknown`` needs ``override`` with a ``reason``; every promotion is logged in ``version.promotions``
    (who, when, the verdict then, override, reason)."""
    reason = (reason or "").strip()
    if override and not reason:
        raise PromotionRefused("an override needs a reason", "override_needs_reason", 400)
    with transaction.atomic():
        locked = RecognizerVersion.objects.select_for_update().get(pk=version.pk)
        if locked.state != RecognizerVersion.State.READY:
            raise PromotionRefused(f"version {locked.name} is {locked.state}: it cannot be promoted", "not_ready")
        if locked.verdict in NEEDS_OVERRIDE and not override:
            raise PromotionRefused(
                f"version {locked.name} is {locked.verdict.replace('_', ' ')} than its parent on the new domain "
                f"({'; '.join(locked.verdict_detail.get('reasons', [])) or 'see verdict_detail'}); promote it only "
                "with override and a reason", "not_better")
        list(RecognizerVersion.objects.select_for_update().filter(is_active=True))
        RecognizerVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        entry = {"at": timezone.now().isoformat(), "by": getattr(user, "username", None),
                 "by_id": getattr(user, "pk", None), "verdict": locked.verdict, "override": bool(override),
                 "reason": reason}
        RecognizerVersion.objects.filter(pk=version.pk).update(is_active=True, promotions=[*locked.promotions, entry])
    version.refresh_from_db()
    return version


def embedder_for(version: RecognizerVersion, device: str = "cpu"):
    """The pipeline Embedder of a version (crops in, L2-normalised features out)."""
    from pipeline.recognition.models import make_embedder

    # the path too: ids can be reused (SQLite after a rollback), and a version's file names what it embeds
    key = (version.pk, version.kind, version.path, device)
    with _LOCK:
        if key not in _EMBEDDERS:
            if version.kind == RecognizerVersion.Kind.CHECKPOINT:
                _EMBEDDERS[key] = make_embedder(checkpoint=artifact_path(version.path), device=device)
            else:
                _EMBEDDERS[key] = make_embedder(onnx_model=version.path or None, device=device)
        return _EMBEDDERS[key]
