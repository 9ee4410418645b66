"""Sign-in lockout: after LOGIN_MAX_FAILURES failed sign-ins for one user name from one address within
LOGIN_LOCKOUT_SECONDS, further attempts are refused (429 with Retry-After) until the window ends.

Counts live in Django's cache (default: files under var/cache, shared by the web server's processes;
FACECURATE_CACHE_URL=redis://... shares them between machines). Failures are counted from Django's
``user_login_failed`` signal, so the token endpoint, the login form and the admin's login all count;
``LockoutModelBackend`` refuses to check any password while locked, whichever form asked.
"""
from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied


def client_address(request) -> str:
    """The peer address (REMOTE_ADDR). Behind a proxy all clients share it: the lockout is then per name."""
    meta = getattr(request, "META", None) or {}
    return meta.get("REMOTE_ADDR") or "unknown"


def _key(username: str, address: str) -> str:
    digest = hashlib.sha256(f"{(username or '').strip().casefold()}\0{address}".encode()).hexdigest()[:40]
    return f"facecurate:signin:{digest}"


def retry_after(username: str, address: str) -> int | None:
    """Seconds until this name may try again from this address, or None when it is not locked."""
    entry = cache.get(_key(username, address))
    if not entry or entry["failures"] < settings.LOGIN_MAX_FAILURES:
        return None
    left = entry["start"] + settings.LOGIN_LOCKOUT_SECONDS - time.time()
    return max(1, math.ceil(left)) if left > 0 else None


def record_failure(username: str, address: str) -> None:
    key = _key(username, address)
    now = time.time()
    entry = cache.get(key)
    if not entry or now - entry["start"] >= settings.LOGIN_LOCKOUT_SECONDS:
        entry = {"start": now, "failures": 0}
    entry["failures"] += 1
    cache.set(key, entry, timeout=max(1, math.ceil(entry["start"] + settings.LOGIN_LOCKOUT_SECONDS - now)))


def reset(username: str, address: str) -> None:
    cache.delete(_key(username, address))


def on_login_failed(sender, credentials, request=None, **kwargs) -> None:
    """``user_login_failed`` receiver (connected in AccountsConfig.ready)."""
    if request is not None:
        record_failure(credentials.get("username") or "", client_address(request))


def on_logged_in(sender, request=None, user=None, **kwargs) -> None:
    if request is not None and user is not None:
        reset(user.get_username(), client_address(request))


class LockoutModelBackend(ModelBackend):
    """Django's model backend that checks no password for a locked name and address."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is not None and username is not None and retry_after(username, client_address(request)):
            raise PermissionDenied("too many failed sign-ins")
        return super().authenticate(request, username=username, password=password, **kwargs)
