"""Types shared by the signatures of the services and the API."""

from __future__ import annotations

from typing import TypeAlias
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

#: who acts: a signed-in user, a request's anonymous user, or None (the system)
Actor: TypeAlias = AbstractBaseUser | AnonymousUser | None
#: a row's id as callers hold it: a UUID, or its text (task arguments, URLs)
RowId: TypeAlias = UUID | str
