"""Rule sets (versioned JSON validated by the engine), backtests and tuning."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from django.db import transaction
from django.db.models import Max

from inspection.errors import Conflict, InvalidInput
from inspection.models import Prediction, Project, RuleSet


def _validate(data):
    from prompting.errors import RuleSetError
    from prompting.rules import ruleset_validate

    if not isinstance(data, Mapping):
        raise InvalidInput(
            "rules must be a JSON object", field_errors={"rules": ["must be an object"]}
        )
    try:
        return ruleset_validate(data)
    except RuleSetError as exc:
        raise InvalidInput("invalid rule set", field_errors=exc.errors) from None


def ruleset_default_create(*, project: Project, user=None) -> RuleSet:
    from prompting.rules import DEFAULT_RULESET

    rs = RuleSet.objects.create(
        project=project,
        version=1,
        data=_validate(copy.deepcopy(DEFAULT_RULESET)).to_dict(),
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


def ruleset_update(*, project: Project, data, user=None, note: str = "") -> RuleSet:
    """Validate ``data``; store it as a new version and make it active.

    Predictions of the deployed model are refreshed with the new rules.
    """
    from inspection.services.training import predictions_refresh_start

    validated = _validate(data)
    _classes_check(project, validated.to_dict())
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
    predictions_refresh_start(project=project, user=user, reason=f"rules v{version}")
    return rs


def _classes_check(project: Project, data: dict) -> None:
    unknown = set((data.get("classes") or {}).keys()) - set(project.class_names)
    errors = {f"classes.{name}": ["not a class of this project"] for name in sorted(unknown)}
    for i, rule in enumerate(data.get("rules") or []):
        cls = rule.get("class")
        if cls not in (None, "*") and cls not in project.class_names:
            errors[f"rules[{i}].class"] = ["not a class of this project"]
    if errors:
        raise InvalidInput("invalid rule set", field_errors=errors)


#: decoded probabilities a backtest or tune keeps in memory; beyond it they are
#: re-read from storage on each pass, so a large project never fills the web worker
PROBABILITIES_KEEP_BYTES = 256 * 2**20


class StoredProbabilities(Mapping):
    """image id -> (K+1,H,W) float32 probabilities of stored predictions, read on demand.

    The engine's backtest and tuner take a Mapping and read each image a few
    times (once per rule set judged). The first images are kept decoded until
    ``keep_bytes`` is reached, the rest are read again on each pass: a small
    project is read once, a large one costs more reads but bounded memory.
    """

    def __init__(self, predictions: Mapping[str, Prediction], *, keep_bytes: int) -> None:
        self._predictions = dict(predictions)
        self._kept: dict[str, object] = {}
        self._kept_bytes = 0
        self._keep_bytes = int(keep_bytes)

    def __getitem__(self, image_id: str):
        from inspection.services.training import probabilities_load

        if image_id in self._kept:
            return self._kept[image_id]
        probabilities = probabilities_load(self._predictions[image_id])
        if self._kept_bytes + probabilities.nbytes <= self._keep_bytes:
            self._kept[image_id] = probabilities
            self._kept_bytes += probabilities.nbytes
        return probabilities

    def __iter__(self):
        return iter(self._predictions)

    def __len__(self) -> int:
        return len(self._predictions)

    def __contains__(self, image_id) -> bool:
        return image_id in self._predictions


def _evaluation_set(project: Project):
    """(probabilities by image id, truths by image id, model version) from stored predictions.

    Uses the latest prediction per labelled image of the deployed model (or the
    newest model when none is deployed). Probabilities are read on demand
    (:class:`StoredProbabilities`).
    """
    mv = project.deployed_model or project.model_versions.order_by("-number").first()
    if mv is None:
        raise Conflict("no trained model yet: train one before backtesting rules", code="no_model")
    latest, truths = {}, {}
    preds = (
        Prediction.objects.filter(model_version=mv, image__project=project)
        .exclude(image__verdict="")
        .exclude(probabilities="")
        .select_related("image")
        .order_by("image_id", "-created_at")
    )
    for pred in preds:
        key = str(pred.image_id)
        if key in latest:
            continue
        latest[key] = pred
        truths[key] = pred.image.verdict
    if not truths:
        raise Conflict(
            "no images with a ground-truth verdict or mask: label some images OK/NG first",
            code="no_ground_truth",
        )
    return StoredProbabilities(latest, keep_bytes=PROBABILITIES_KEEP_BYTES), truths, mv


def _trained_on(mv) -> set[str]:
    """Ids of the images model version ``mv`` was trained on (their figures are optimistic)."""
    return {str(entry.get("id")) for entry in mv.images or [] if isinstance(entry, dict)}


def rules_backtest(*, project: Project, data=None) -> dict:
    """Backtest ``data`` (or the active rules) on labelled images vs the active rules."""
    from prompting.backtest import backtest_run

    active = ruleset_active_get(project=project)
    baseline = _validate(active.data)
    candidate = _validate(data) if data is not None else baseline
    if data is not None:
        _classes_check(project, candidate.to_dict())
    probabilities, truths, mv = _evaluation_set(project)
    report = backtest_run(
        probabilities,
        truths,
        classes=mv.classes,
        ruleset=candidate,
        px_per_mm=project.px_per_mm,
        baseline=baseline,
        trained_on=_trained_on(mv),
    )
    return {
        **report.to_dict(),
        "model_version": str(mv.id),
        "baseline_rules_version": active.version,
    }


def rules_tune(*, project: Project) -> dict:
    """The engine tuner's suggested rules (not saved), with its warning if any."""
    from prompting.backtest import rules_tune as engine_tune

    active = ruleset_active_get(project=project)
    probabilities, truths, mv = _evaluation_set(project)
    tuned = engine_tune(
        probabilities,
        truths,
        classes=mv.classes,
        base=_validate(active.data),
        px_per_mm=project.px_per_mm,
        trained_on=_trained_on(mv),
    )
    return {
        "rules": tuned.ruleset.to_dict(),
        "threshold": tuned.threshold,
        "min_area_px": tuned.min_area_px,
        "report": tuned.report.to_dict(),
        "warning": tuned.warning,
        "model_version": str(mv.id),
        "baseline_rules_version": active.version,
    }
