"""Dashboard page views: thin. Each renders a page shell with the little data the
page's script needs to start (ids, role, classes); the script reads the rest from
/api/v1/. Project pages answer 404 to anyone who isn't a member, like the API.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from inspection import selectors
from inspection.api.permissions import ADMIN, ALLOWED, EDIT, INSPECT
from inspection.models import Project
from inspection.services.engine import sam_configured
from prompting.worksize import WORK_MAX_SIDE

LOGIN = "dashboard:login"


@dataclass(frozen=True)
class ProjectAccess:
    project: Project
    role: str

    @property
    def can_edit(self) -> bool:
        return self.role in ALLOWED[EDIT]

    @property
    def can_inspect(self) -> bool:
        return self.role in ALLOWED[INSPECT]

    @property
    def can_admin(self) -> bool:
        return self.role in ALLOWED[ADMIN]


def project_access_get(*, user, project_id) -> ProjectAccess:
    """The user's role in the project, or 404 (never 403: ids don't leak).

    Same membership-scoped selector as the API."""
    project = selectors.project_get(user=user, pk=project_id)
    role = selectors.project_role(user=user, project=project)
    if role is None:
        raise Http404("No such project")
    return ProjectAccess(project=project, role=role)


def _project_page(
    request: HttpRequest, template: str, access: ProjectAccess, tab: str, **extra
) -> HttpResponse:
    project = access.project
    sam_enabled = sam_configured() or project.backend == "sam"
    page_data = {
        "project_id": str(project.pk),
        "role": access.role,
        "can_edit": access.can_edit,
        "can_inspect": access.can_inspect,
        "can_admin": access.can_admin,
        "classes": project.classes,
        "px_per_mm": project.px_per_mm,
        "sam_enabled": sam_enabled,
        "user": request.user.get_username(),
    }
    page_data.update(extra.pop("page_data", {}))
    context = {
        "project": project,
        "role": access.role,
        "tab": tab,
        "can_edit": access.can_edit,
        "can_train": access.can_edit,
        "can_inspect": access.can_inspect,
        "can_admin": access.can_admin,
        "sam_enabled": sam_enabled,
        "page_data": page_data,
        **extra,
    }
    return render(request, template, context)


def _active_train_job(project: Project) -> str | None:
    job = selectors.train_job_active(project=project)
    return str(job.pk) if job else None


@login_required(login_url=LOGIN)
def projects_page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/projects.html",
        {
            "page_data": {"user": request.user.get_username()},
            "default_backend": settings.DEFAULT_FEATURE_BACKEND,
            "default_work_max_side": WORK_MAX_SIDE,
            "sam_enabled": sam_configured(),
        },
    )


@login_required(login_url=LOGIN)
def overview_page(request: HttpRequest, project_id) -> HttpResponse:
    access = project_access_get(user=request.user, project_id=project_id)
    return _project_page(
        request,
        "dashboard/overview.html",
        access,
        "overview",
        page_data={"active_job": _active_train_job(access.project)},
    )


@login_required(login_url=LOGIN)
def editor_page(request: HttpRequest, project_id, image_id) -> HttpResponse:
    access = project_access_get(user=request.user, project_id=project_id)
    image = selectors.image_in_project(project=access.project, pk=image_id)
    return _project_page(
        request,
        "dashboard/editor.html",
        access,
        "overview",
        image=image,
        page_data={
            "image_id": str(image.pk),
            "width": image.width,
            "height": image.height,
            "active_job": _active_train_job(access.project),
        },
    )


@login_required(login_url=LOGIN)
def rules_page(request: HttpRequest, project_id) -> HttpResponse:
    access = project_access_get(user=request.user, project_id=project_id)
    return _project_page(request, "dashboard/rules.html", access, "rules")


@login_required(login_url=LOGIN)
def models_page(request: HttpRequest, project_id) -> HttpResponse:
    access = project_access_get(user=request.user, project_id=project_id)
    return _project_page(request, "dashboard/models.html", access, "models")


@login_required(login_url=LOGIN)
def decision_page(request: HttpRequest, project_id, image_id) -> HttpResponse:
    access = project_access_get(user=request.user, project_id=project_id)
    image = selectors.image_in_project(project=access.project, pk=image_id)
    return _project_page(
        request,
        "dashboard/decision.html",
        access,
        "overview",
        image=image,
        page_data={
            "source": "prediction",
            "image_id": str(image.pk),
            "width": image.width,
            "height": image.height,
        },
    )


@login_required(login_url=LOGIN)
def inspection_decision_page(request: HttpRequest, project_id, inspection_id) -> HttpResponse:
    access = project_access_get(user=request.user, project_id=project_id)
    inspection = selectors.inspection_in_project(project=access.project, pk=inspection_id)
    return _project_page(
        request,
        "dashboard/decision.html",
        access,
        "inspections",
        inspection=inspection,
        page_data={
            "source": "inspection",
            "inspection_id": str(inspection.pk),
            "width": inspection.width,
            "height": inspection.height,
        },
    )


@login_required(login_url=LOGIN)
def inspections_page(request: HttpRequest, project_id) -> HttpResponse:
    access = project_access_get(user=request.user, project_id=project_id)
    return _project_page(request, "dashboard/inspections.html", access, "inspections")


@login_required(login_url=LOGIN)
def settings_page(request: HttpRequest, project_id) -> HttpResponse:
    access = project_access_get(user=request.user, project_id=project_id)
    return _project_page(request, "dashboard/settings.html", access, "settings")
