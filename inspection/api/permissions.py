"""Who may do what in a project.

owner: everything (members, webhooks, delete); engineer: images, prompts,
train, rules, deploy, cancel jobs; operator: inspect and read; viewer: read.
Non-members never learn a project exists: lookups are scoped, so they get 404.
"""

from __future__ import annotations

from rest_framework.exceptions import PermissionDenied

from inspection import selectors
from inspection.models import Project, Role
from inspection.types import Actor

READ = "read"
INSPECT = "inspect"
EDIT = "edit"
ADMIN = "admin"

ALLOWED: dict[str, set[str]] = {
    READ: {Role.OWNER, Role.ENGINEER, Role.OPERATOR, Role.VIEWER},
    INSPECT: {Role.OWNER, Role.ENGINEER, Role.OPERATOR},
    EDIT: {Role.OWNER, Role.ENGINEER},
    ADMIN: {Role.OWNER},
}

MESSAGES = {
    INSPECT: "your role in this project can't run inspections (operator or above)",
    EDIT: "your role in this project can't change it (engineer or owner)",
    ADMIN: "only the project's owners can do this",
}


def role_require(*, user: Actor, project: Project, need: str) -> str:
    """The user's role; PermissionDenied (403) when it doesn't allow ``need``.

    Callers have already found ``project`` through a membership-scoped
    selector, so the user is a member here.
    """
    role = selectors.project_role(user=user, project=project)
    if role not in ALLOWED[need]:
        raise PermissionDenied(MESSAGES.get(need, "not allowed"))
    return role
