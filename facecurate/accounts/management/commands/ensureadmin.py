"""``manage.py ensureadmin``: make a first staff superuser when there is no superuser yet.

The password is FACECURATE_ADMIN_PASSWORD, or a generated one printed once. Username from
FACECURATE_ADMIN_USER (default ``admin``). Does nothing when a superuser exists.
"""
from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from facecurate.accounts.roles import STAFF, create_user
from facecurate.env import env_str


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
        user, token = create_user(username, role=STAFF, password=password)
        user.is_superuser = True
        user.is_staff = True
        user.save(update_fields=["is_superuser", "is_staff"])
        shown = password if generated else "(from FACECURATE_ADMIN_PASSWORD)"
        self.stdout.write(f"created admin user {username!r} password {shown} token {token}")
