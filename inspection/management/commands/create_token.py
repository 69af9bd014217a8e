"""Create (or show) the API token of a user; optionally an integration user.

Integrations (a line PLC, an MES) get their own service user with a token and
an ``operator`` membership: they can inspect and read results, nothing else.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from inspection.models import Project
from inspection.services.projects import membership_set


class Command(BaseCommand):
    help = "Print the API token of USERNAME (created if missing)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="create the user (unusable password) if missing",
        )
        parser.add_argument(
            "--project", default=None, help="also make the user a member of this project"
        )
        parser.add_argument(
            "--role", default="operator", choices=["owner", "engineer", "operator", "viewer"]
        )
        parser.add_argument("--rotate", action="store_true", help="replace an existing token")

    def handle(self, *args, username, create_user, project, role, rotate, **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(
                    f"no user {username!r} (use --create-user for an integration user)"
                )
            user = User(username=username)
            user.set_unusable_password()
            user.save()
        if project:
            try:
                proj = Project.objects.get(id=project)
            except Exception:
                raise CommandError(f"no project {project!r}") from None
            membership_set(project=proj, username=username, role=role)
        if rotate:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
