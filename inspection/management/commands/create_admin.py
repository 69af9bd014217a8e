"""Create the first admin account (idempotent).

The password comes from ADMIN_PASSWORD, or is generated and printed once.
"""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the superuser ADMIN_USERNAME (default admin) if it doesn't exist."

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("ADMIN_USERNAME", "admin")
        email = os.environ.get("ADMIN_EMAIL", "")
        password = os.environ.get("ADMIN_PASSWORD", "")
        user = User.objects.filter(username=username).first()
        if user is not None:
            if password and not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
                self.stdout.write(f"admin {username!r} exists; password set from ADMIN_PASSWORD")
            else:
                self.stdout.write(f"admin {username!r} exists")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=email, password=password)
        if generated:
            self.stdout.write(f"created admin {username!r} with password: {password}")
        else:
            self.stdout.write(f"created admin {username!r} (password from ADMIN_PASSWORD)")
