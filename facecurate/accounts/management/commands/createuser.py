"""``manage.py createuser NAME --role staff|annotator [--password P]``: a user with a role and an API token."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from facecurate.accounts.roles import ROLES, create_user


class Command(BaseCommand):
    help = "Create or update a user with a role (annotator or staff) and print its API token."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=ROLES, required=True)
        parser.add_argument("--password", help="login password (omit for a token-only user)")
        parser.add_argument("--email", default="")

    def handle(self, *args, username, role, password, email, **options):
        try:
            user, token = create_user(username, role=role, password=password, email=email)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"user {user.username} role {role} token {token}")
