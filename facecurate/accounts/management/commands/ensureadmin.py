"""``manage.py ensureadmin``: make a first staff superuser when there is no superuser yet.

The password is FACECURATE_ADMIN_PASSWORD, or a generated one written to var/admin_password
(mode 0600; the command prints the file's path, never the password or the API token, so neither
ends up in a log). Username from FACECURATE_ADMIN_USER (default ``admin``). Does nothing when a
superuser exists.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from facecurate.accounts.roles import STAFF, create_user
from facecurate.env import env_str


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Command(BaseCommand):
    help = "Create an initial admin (superuser, staff role, API token) if no superuser exists."

    def handle(self, *args, **options):
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            self.stdout.write("a superuser exists already; nothing to do")
            return
        username = env_str("FACECURATE_ADMIN_USER", "admin")
        password = env_str("FACECURATE_ADMIN_PASSWORD")
        generated = password is None
        if generated:
            password = secrets.token_urlsafe(12)
        user, _token = create_user(username, role=STAFF, password=password)
        user.is_superuser = True
        user.is_staff = True
        user.save(update_fields=["is_superuser", "is_staff"])
        if generated:
            path = Path(settings.ADMIN_PASSWORD_FILE)
            write_private(path, f"{password}\n")  # the password alone, as the README says
            where = (f"its password is the one line of {path} (readable by you only; delete the file once you "
                     "have signed in)")
        else:
            where = "its password is FACECURATE_ADMIN_PASSWORD"
        self.stdout.write(f"created admin user {username!r}; {where}. "
                          f"Get its API token with POST /api/auth/token/ or `.venv/bin/python manage.py createuser`.")
