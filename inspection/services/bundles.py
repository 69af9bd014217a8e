"""Inspection bundles: a model version and a rule set exported as one verified
file (``prompting.bundle``), so a line PC decides with
``python -m prompting inspect --bundle FILE`` exactly as the server does."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.utils import timezone

from inspection.errors import InvalidInput
from inspection.models import ModelVersion, RuleSet
from inspection.services.rulesets import ruleset_active_get
from inspection.storage import bytes_read
from inspection.types import Actor
from prompting.bundle import bundle_build
from prompting.errors import BundleError


@dataclass
class ExportedBundle:
    data: bytes
    filename: str
    ruleset: RuleSet


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "project"


def model_bundle_build(
    *, model_version: ModelVersion, rules_version: int | None = None, user: Actor = None
) -> ExportedBundle:
    """The bundle of ``model_version`` with the project's active rules (or rule-set
    version ``rules_version``) and its px_per_mm; 400 naming ``rules_version``
    when the project has no such version, or when the rules don't fit the model."""
    project = model_version.project
    if rules_version is None:
        ruleset = ruleset_active_get(project=project)
    else:
        ruleset = RuleSet.objects.filter(project=project, version=rules_version).first()
        if ruleset is None:
            raise InvalidInput(
                f"the project has no rule-set version {rules_version}",
                field_errors={"rules_version": [f"no rule-set version {rules_version}"]},
            )
    provenance = {
        "project": {"id": str(project.id), "name": project.name},
        "model": {"id": str(model_version.id), "number": model_version.number},
        "rules": {"id": str(ruleset.id), "version": ruleset.version},
        "exported_at": timezone.now().isoformat(),
        "exported_by": user.get_username() if user is not None and user.is_authenticated else None,
    }
    try:
        data = bundle_build(
            model_bytes=bytes_read(model_version.artifact.name),
            rules=ruleset.data,
            px_per_mm=project.px_per_mm,
            provenance=provenance,
            input_mode=project.input_check,
            input_margin=project.input_check_margin,
        )
    except BundleError as exc:
        raise InvalidInput(str(exc), field_errors={"rules_version": [str(exc)]}) from None
    filename = f"{_slug(project.name)}-model{model_version.number}-rules{ruleset.version}.zip"
    return ExportedBundle(data=data, filename=filename, ruleset=ruleset)
