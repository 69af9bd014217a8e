"""Projects and their members."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from inspection.errors import Conflict, InvalidInput
from inspection.models import Inspection, Membership, Project, Role
from inspection.services.images import image_cache_purge
from inspection.services.retention import cached_images
from inspection.services.rulesets import ruleset_default_create
from inspection.storage import prefix_delete, project_prefix
from inspection.types import Actor
from prompting.features import backend_names
from prompting.inputcheck import DEFAULT_MARGIN
from prompting.worksize import WORK_MAX_SIDE, work_bound_error

_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,49}$")
_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"]


def classes_clean(raw: Any, *, kept: Collection[str] = ()) -> list[dict]:
    """[{"name", "colour"}]: names unique, not "background" nor the anomaly regions'
    class (``prompting.rules.types.ANOMALY_CLASS``: a decision's blobs would mix the
    two) unless ``kept`` holds it (a project that has it already); colours #rrggbb."""
    # deferred: prompting.rules loads scipy, which the web process does not need at start
    from prompting.rules.types import ANOMALY_CLASS

    if not isinstance(raw, list) or not raw:
        raise InvalidInput(
            "at least one defect class is required",
            field_errors={"classes": ["at least one defect class is required"]},
        )
    if len(raw) > 20:
        raise InvalidInput("too many classes", field_errors={"classes": ["at most 20 classes"]})
    errors: dict[str, list[str]] = {}
    out: list[dict] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            errors[f"classes[{i}]"] = ["must be an object {name, colour} or a name"]
            continue
        name = item.get("name")
        colour = item.get("colour") or item.get("color") or _PALETTE[i % len(_PALETTE)]
        if not isinstance(name, str) or not _CLASS_NAME.match(name):
            errors[f"classes[{i}].name"] = [
                "1-50 letters, digits, space, _ . - ; starting with a letter or digit"
            ]
            continue
        if name.lower() == "background":
            errors[f"classes[{i}].name"] = ['"background" is reserved']
            continue
        if name.lower() == ANOMALY_CLASS and name not in kept:
            errors[f"classes[{i}].name"] = [
                f'"{ANOMALY_CLASS}" is reserved for the anomalous regions the anomaly_score '
                "rule reports; choose another name"
            ]
            continue
        if name in seen:
            errors[f"classes[{i}].name"] = ["duplicate class name"]
            continue
        if not isinstance(colour, str) or not _COLOUR.match(colour):
            errors[f"classes[{i}].colour"] = ["must be #rrggbb"]
            continue
        seen.add(name)
        out.append({"name": name, "colour": colour.lower()})
    if errors:
        raise InvalidInput("invalid classes", field_errors=errors)
    return out


@transaction.atomic
def project_create(
    *,
    user: Actor,
    name: str,
    classes: Any,
    description: str = "",
    cold_start_min: int | None = None,
    px_per_mm: float | None = None,
    backend: str | None = None,
    work_max_side: int = WORK_MAX_SIDE,
    keep_inspection_images: str = "none",
    alert_ng_rate: float | None = None,
    alert_window: int = 50,
    input_check: str = "flag",
    input_check_margin: float = DEFAULT_MARGIN,
    mqtt_publish: bool = False,
) -> Project:
    """Create a project owned by ``user``, with rule set v1 (the engine's defaults)."""
    backend = backend or settings.DEFAULT_FEATURE_BACKEND
    _backend_check(backend)
    _work_max_side_check(work_max_side)
    project = Project.objects.create(
        name=name,
        description=description,
        classes=classes_clean(classes),
        cold_start_min=settings.COLD_START_MIN_IMAGES if cold_start_min is None else cold_start_min,
        px_per_mm=px_per_mm,
        backend=backend,
        work_max_side=work_max_side,
        keep_inspection_images=keep_inspection_images,
        alert_ng_rate=alert_ng_rate,
        alert_window=alert_window,
        input_check=input_check,
        input_check_margin=input_check_margin,
        mqtt_publish=mqtt_publish,
        created_by=user,
    )
    Membership.objects.create(project=project, user=user, role=Role.OWNER)
    ruleset_default_create(project=project, user=user)
    return project


def _work_max_side_check(value: int) -> None:
    error = work_bound_error(value)
    if error:
        raise InvalidInput(
            f"work_max_side {value} is out of range", field_errors={"work_max_side": [error]}
        )


def _backend_check(name: str) -> None:
    if name not in backend_names():
        raise InvalidInput(
            f"unknown feature backend {name!r}",
            field_errors={"backend": [f"one of: {', '.join(backend_names())}"]},
        )


@transaction.atomic
def project_update(*, project: Project, data: dict) -> Project:
    """Update name, description, classes, cold_start_min, px_per_mm, backend,
    work_max_side (the working resolution of the next Run's model),
    keep_inspection_images (applies to inspections from now on), alert_ng_rate
    and alert_window (the line alert; turning it off clears a raised alert),
    input_check and input_check_margin (inspections from now on), mqtt_publish
    (every decision and line alert to the MQTT broker, from now on), auto_deploy
    (every Run's model is deployed until the first line inspection).

    Classes can be added or recoloured; removing or renaming a class that
    prompts use is refused (the history would no longer make sense).
    """
    project = Project.objects.select_for_update().get(id=project.id)
    if "classes" in data:
        new = classes_clean(data["classes"], kept=project.class_names)
        used = set(
            project.images.filter(prompts__deleted_at__isnull=True)
            .values_list("prompts__label", flat=True)
            .distinct()
        ) - {"background", None}
        missing = used - {c["name"] for c in new}
        if missing:
            raise Conflict(
                f"classes {sorted(missing)} are used by prompts; delete those prompts first",
                field_errors={"classes": [f"still used by prompts: {', '.join(sorted(missing))}"]},
            )
        project.classes = new
    if "backend" in data:
        _backend_check(data["backend"])
        project.backend = data["backend"]
    if "work_max_side" in data:
        _work_max_side_check(data["work_max_side"])
        project.work_max_side = data["work_max_side"]
    fields = (
        "name",
        "description",
        "cold_start_min",
        "px_per_mm",
        "keep_inspection_images",
        "alert_ng_rate",
        "alert_window",
        "input_check",
        "input_check_margin",
        "mqtt_publish",
        "auto_deploy",
    )
    for field in fields:
        if field in data:
            setattr(project, field, data[field])
    if "alert_ng_rate" in data and data["alert_ng_rate"] is None and project.alert_active:
        project.alert_active = False
        project.alert_changed_at = timezone.now()
    project.save()
    return project


def project_delete(*, project: Project) -> None:
    """Delete the project, its rows and every file under its storage prefix."""
    prefix = project_prefix(project.id)
    cached = cached_images(project.images.all())
    with transaction.atomic():
        # inspections are immutable one by one, but go with their project; they
        # PROTECT their model version and rule set, so they must go first
        Inspection.objects.filter(project=project).delete()
        project.delete()
    transaction.on_commit(lambda: prefix_delete(prefix))
    transaction.on_commit(lambda: image_cache_purge(cached))


def membership_set(*, project: Project, username: str, role: str) -> Membership:
    if role not in Role.values:
        raise InvalidInput(
            "unknown role", field_errors={"role": [f"one of: {', '.join(Role.values)}"]}
        )
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise InvalidInput(
            "no such user", field_errors={"username": ["no active user with this name"]}
        )
    with transaction.atomic():
        membership, _ = Membership.objects.select_for_update().get_or_create(
            project=project, user=user, defaults={"role": role}
        )
        if membership.role == Role.OWNER and role != Role.OWNER:
            _last_owner_check(project=project, membership=membership)
        membership.role = role
        membership.save()
    return membership


def membership_remove(*, membership: Membership) -> None:
    with transaction.atomic():
        if membership.role == Role.OWNER:
            _last_owner_check(project=membership.project, membership=membership)
        membership.delete()


def _last_owner_check(*, project: Project, membership: Membership) -> None:
    owners = Membership.objects.filter(project=project, role=Role.OWNER).exclude(id=membership.id)
    if not owners.exists():
        raise Conflict("a project needs at least one owner")
