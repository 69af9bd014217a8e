"""Rule-set versions: JSON validated by the engine, stored as immutable rows.

A project's rules change by adding a version (:func:`ruleset_version_create`)
and making it active; earlier versions stay, since predictions and
inspections point at the version they were judged with.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import Max

from inspection.errors import InvalidInput
from inspection.models import Project, RuleSet
from inspection.types import Actor
from prompting.errors import RuleSetError


def ruleset_parse(data: Any) -> Any:
    """The engine's ``RuleSet`` for ``data``; InvalidInput naming every invalid field."""
    # deferred: scikit-image and scipy load on first use
    from prompting.rules import ruleset_validate

    if not isinstance(data, Mapping):
        raise InvalidInput(
            "rules must be a JSON object", field_errors={"rules": ["must be an object"]}
        )
    try:
        return ruleset_validate(data)
    except RuleSetError as exc:
        raise InvalidInput("invalid rule set", field_errors=exc.errors) from None


def ruleset_classes_check(*, project: Project, data: dict) -> None:
    """InvalidInput naming every field of ``data`` that names a class ``project`` lacks."""
    unknown = set((data.get("classes") or {}).keys()) - set(project.class_names)
    errors = {f"classes.{name}": ["not a class of this project"] for name in sorted(unknown)}
    for i, rule in enumerate(data.get("rules") or []):
        cls = rule.get("class")
        if cls not in (None, "*") and cls not in project.class_names:
            errors[f"rules[{i}].class"] = ["not a class of this project"]
    if errors:
        raise InvalidInput("invalid rule set", field_errors=errors)


def ruleset_vocabulary_get() -> dict:
    """What a rule set may say (rule types and their fields, measures, morphology
    operations, severities), from the engine: rule editors build their forms from it."""
    # deferred: scikit-image and scipy load on first use
    from prompting.rules import ruleset_vocabulary

    return ruleset_vocabulary()


def ruleset_default_create(*, project: Project, user: Actor = None) -> RuleSet:
    """Version 1 of ``project``'s rules: the engine's defaults, made active."""
    # deferred: scikit-image and scipy load on first use
    from prompting.rules import DEFAULT_RULESET

    rs = RuleSet.objects.create(
        project=project,
        version=1,
        data=ruleset_parse(copy.deepcopy(DEFAULT_RULESET)).to_dict(),
        note="engine defaults",
        created_by=user if user and user.is_authenticated else None,
    )
    Project.objects.filter(id=project.id).update(active_ruleset=rs)
    project.active_ruleset = rs
    return rs


def ruleset_active_get(*, project: Project) -> RuleSet:
    """The active rule set (creating v1 from the engine defaults if missing)."""
    project.refresh_from_db(fields=["active_ruleset"])
    if project.active_ruleset_id:
        return RuleSet.objects.get(id=project.active_ruleset_id)
    with transaction.atomic():
        Project.objects.select_for_update().get(id=project.id)
        latest = project.rulesets.order_by("-version").first()
        if latest is None:
            return ruleset_default_create(project=project)
        Project.objects.filter(id=project.id).update(active_ruleset=latest)
        return latest


def ruleset_version_create(
    *, project: Project, data: Any, user: Actor = None, note: str = ""
) -> RuleSet:
    """Validate ``data`` (engine and project classes); store it as the next
    version and make it active."""
    validated = ruleset_parse(data)
    ruleset_classes_check(project=project, data=validated.to_dict())
    with transaction.atomic():
        Project.objects.select_for_update().get(id=project.id)
        version = (project.rulesets.aggregate(v=Max("version"))["v"] or 0) + 1
        rs = RuleSet.objects.create(
            project=project,
            version=version,
            data=validated.to_dict(),
            note=note[:200],
            created_by=user if user and user.is_authenticated else None,
        )
        Project.objects.filter(id=project.id).update(active_ruleset=rs)
        project.active_ruleset = rs
    return rs
