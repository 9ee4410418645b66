"""Roles are Django groups: ``annotator`` (read, review) and ``staff`` (ingest, run pipelines, retrain).

Django's ``is_staff`` and ``is_superuser`` flags also count as the staff role. Staff can do all an
annotator can.
"""
from __future__ import annotations

ANNOTATOR = "annotator"
STAFF = "staff"
ROLES = (ANNOTATOR, STAFF)


def _in_group(user, name: str) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    cache = getattr(user, "_facecurate_groups", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._facecurate_groups = cache
    return name in cache


def is_staff_role(user) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or user.is_staff or _in_group(user, STAFF))


def is_annotator(user) -> bool:
    return is_staff_role(user) or (getattr(user, "is_active", False) and _in_group(user, ANNOTATOR))


def role_of(user) -> str | None:
    if is_staff_role(user):
        return STAFF
    if is_annotator(user):
        return ANNOTATOR
    return None


def ensure_groups():
    from django.contrib.auth.models import Group

    return [Group.objects.get_or_create(name=name)[0] for name in ROLES]


def create_user(username: str, *, role: str, password: str | None = None, email: str = "", token: bool = True):
    """Create (or update) a user with one role; returns (user, token key or None)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    ensure_groups()
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username, defaults={"email": email})
    if password:
        user.set_password(password)
    elif not user.has_usable_password():
        user.set_unusable_password()
    user.save()
    user.groups.remove(*Group.objects.filter(name__in=ROLES))
    user.groups.add(Group.objects.get(name=role))
    key = Token.objects.get_or_create(user=user)[0].key if token else None
    return user, key
