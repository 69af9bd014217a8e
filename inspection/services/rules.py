"""Rule-set changes, backtests and tuning (versions themselves: ``rulesets``).

A backtest or tune reads the stored probabilities of every labelled image. On a
small project that takes well under a second and is answered in the request; on
a large one (more than ``RULES_SYNC_MAX_MEGAPIXELS`` of labelled images), or when
the client sends ``Prefer: respond-async``, it becomes a job (kind ``backtest``
or ``tune``) whose row carries progress and, at the end, the same report as
``result``. Invalid rules and projects with nothing to judge are refused in the
request either way, so a job is only queued when it can run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from inspection.errors import Conflict, InvalidInput
from inspection.models import Job, Prediction, Project, RuleSet
from inspection.services import jobs, predictions, rulesets
from inspection.types import Actor, RowId


def ruleset_update(*, project: Project, data: Any, user: Actor = None, note: str = "") -> RuleSet:
    """Validate ``data``; store it as a new version and make it active.

    Predictions of the deployed model are refreshed with the new rules.
    """
    rs = rulesets.ruleset_version_create(project=project, data=data, user=user, note=note)
    predictions.predictions_refresh_start(project=project, user=user, reason=f"rules v{rs.version}")
    return rs


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
        return self._arrays(image_id)[0]

    def _arrays(self, image_id: str):
        """(probabilities, rule inputs) of one image, decoded once while within budget."""
        if image_id in self._kept:
            return self._kept[image_id]
        prediction = self._predictions[image_id]
        probabilities = predictions.probabilities_load(prediction)
        anomaly = predictions.prediction_anomaly_load(prediction)
        arrays = (probabilities, {} if anomaly is None else {"anomaly": anomaly})
        size = probabilities.nbytes + (0 if anomaly is None else anomaly.nbytes)
        if self._kept_bytes + size <= self._keep_bytes:
            self._kept[image_id] = arrays
            self._kept_bytes += size
        return arrays

    @property
    def inputs(self) -> Mapping:
        """image id -> the rule inputs stored with its prediction (the anomaly map)."""
        return _StoredInputs(self)

    def __iter__(self):
        return iter(self._predictions)

    def __len__(self) -> int:
        return len(self._predictions)

    def __contains__(self, image_id) -> bool:
        return image_id in self._predictions


class _StoredInputs(Mapping):
    """The rule inputs of a :class:`StoredProbabilities`, read with its probabilities."""

    def __init__(self, stored: StoredProbabilities) -> None:
        self._stored = stored

    def __getitem__(self, image_id: str):
        if self._stored._predictions[image_id].anomaly_peak is None:
            return {}  # no map stored: nothing to decode
        return self._stored._arrays(image_id)[1]

    def get(self, image_id, default=None):
        return self[image_id] if image_id in self._stored else default

    def __iter__(self):
        return iter(self._stored)

    def __len__(self) -> int:
        return len(self._stored)


def _evaluation_set(project: Project, rows=None):
    """(probabilities by image id, truths by image id, model version) from stored predictions.

    Uses the latest prediction per labelled image of the deployed model (or the
    newest model when none is deployed). Probabilities are read on demand
    (:class:`StoredProbabilities`), so this is cheap: it only queries rows, or
    takes ``rows`` from :func:`_evaluation_rows` when the caller has them.
    """
    latest, truths, mv = rows if rows is not None else _evaluation_rows(project)
    return StoredProbabilities(latest, keep_bytes=PROBABILITIES_KEEP_BYTES), truths, mv


def _evaluation_rows(project: Project):
    """(latest Prediction by image id, truths by image id, model version); raises
    Conflict when there is no model or no labelled image to judge."""
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
    return latest, truths, mv


def _trained_on(mv) -> set[str]:
    """Ids of the images model version ``mv`` was trained on (their figures are optimistic)."""
    return {str(entry.get("id")) for entry in mv.images or [] if isinstance(entry, dict)}


ProgressFn = Callable[[float, str], None]


def _candidate(project: Project, data, fallback):
    """``data`` validated against the engine and the project's classes, or ``fallback``."""
    if data is None:
        return fallback
    candidate = rulesets.ruleset_parse(data)
    rulesets.ruleset_classes_check(project=project, data=candidate.to_dict())
    return candidate


def rules_backtest(
    *,
    project: Project,
    data: Any = None,
    progress: ProgressFn | None = None,
    rows: tuple | None = None,
) -> dict:
    """Backtest ``data`` (or the active rules) on labelled images vs the active rules."""
    # deferred: scikit-image and scipy load on first use
    from prompting.backtest import backtest_run

    active = rulesets.ruleset_active_get(project=project)
    baseline = rulesets.ruleset_parse(active.data)
    candidate = _candidate(project, data, baseline)
    probabilities, truths, mv = _evaluation_set(project, rows)
    report = backtest_run(
        probabilities,
        truths,
        classes=mv.classes,
        ruleset=candidate,
        px_per_mm=project.px_per_mm,
        baseline=baseline,
        trained_on=_trained_on(mv),
        progress=progress,
        inputs=probabilities.inputs,
    )
    return {
        **report.to_dict(),
        "model_version": str(mv.id),
        "baseline_rules_version": active.version,
    }


def rules_tune(
    *,
    project: Project,
    data: Any = None,
    progress: ProgressFn | None = None,
    rows: tuple | None = None,
) -> dict:
    """The engine tuner's suggested rules (not saved), with its warning if any,
    and the other operating points (``alternatives``) it found on the way.

    ``data``: the rule set to start from (every setting but the tuned threshold
    and minimum area is kept), by default the active one.
    """
    # deferred: scikit-image and scipy load on first use
    from prompting.tuner import rules_tune as engine_tune

    active = rulesets.ruleset_active_get(project=project)
    base = rulesets.ruleset_parse(active.data) if data is None else _candidate(project, data, None)
    probabilities, truths, mv = _evaluation_set(project, rows)
    tuned = engine_tune(
        probabilities,
        truths,
        classes=mv.classes,
        base=base,
        px_per_mm=project.px_per_mm,
        trained_on=_trained_on(mv),
        progress=progress,
        inputs=probabilities.inputs,
        anomaly_held_out=bool((mv.metrics or {}).get("anomaly_held_out")),
    )
    return {
        "rules": tuned.ruleset.to_dict(),
        "threshold": tuned.threshold,
        "min_area_px": tuned.min_area_px,
        "report": tuned.report.to_dict(),
        # the other operating points the labelled images allow: more escapes, fewer overkills
        "alternatives": [alt.to_dict() for alt in tuned.alternatives],
        "warning": tuned.warning,
        "model_version": str(mv.id),
        # the proposal's "changes" are against its base: the posted rules, or the active ones
        "base": "active" if data is None else "request",
        "baseline_rules_version": active.version if data is None else None,
    }


# --------------------------------------------------------------------------- as jobs


@dataclass
class RulesOutcome:
    """What a backtest or tune request gives: the report now, or the job computing it."""

    report: dict | None = None
    job: Job | None = None


_OPERATIONS: dict[str, Callable[..., dict]] = {
    Job.Kind.BACKTEST: rules_backtest,
    Job.Kind.TUNE: rules_tune,
}


def rules_labelled_megapixels(*, project: Project, rows: tuple | None = None) -> float:
    """Megapixels of the labelled images a backtest or tune of ``project`` reads."""
    latest, _, _ = rows if rows is not None else _evaluation_rows(project)
    return sum(p.image.width * p.image.height for p in latest.values()) / 1e6


def _rules_request(*, kind: str, project: Project, data, user, prefer_async: bool) -> RulesOutcome:
    operation = _OPERATIONS[kind]
    # refuse what cannot run before anything is queued (400 / 409 in the request)
    _candidate(project, data, None)
    rows = _evaluation_rows(project)  # read once: sized here, judged below when in the request
    megapixels = rules_labelled_megapixels(project=project, rows=rows)
    if not prefer_async and megapixels <= settings.RULES_SYNC_MAX_MEGAPIXELS:
        return RulesOutcome(report=operation(project=project, data=data, rows=rows))
    with transaction.atomic():
        job = jobs.job_create(
            project=project,
            kind=kind,
            user=user,
            params={"rules": data} if data is not None else {},
            message=f"queued: {kind} over {megapixels:.1f} megapixels of labelled images",
        )
        jobs.job_enqueue(job=job)
    return RulesOutcome(job=jobs.job_enqueue_raise_if_failed(job=job))


def rules_backtest_request(
    *, project: Project, data: Any = None, user: Actor = None, prefer_async: bool = False
) -> RulesOutcome:
    """Backtest ``data`` (or the active rules): in the request when the labelled
    images are small enough, else (or when ``prefer_async``) as a job."""
    return _rules_request(
        kind=Job.Kind.BACKTEST, project=project, data=data, user=user, prefer_async=prefer_async
    )


def rules_tune_request(
    *, project: Project, data: Any = None, user: Actor = None, prefer_async: bool = False
) -> RulesOutcome:
    """Tune from ``data`` (or the active rules): in the request or as a job, as
    :func:`rules_backtest_request`."""
    return _rules_request(
        kind=Job.Kind.TUNE, project=project, data=data, user=user, prefer_async=prefer_async
    )


def rules_job_run(*, job_id: RowId, task_id: str = "") -> None:
    """Run a queued backtest or tune job; its report becomes the job's result."""
    jobs.job_execute(job_id=job_id, task_id=task_id, work=_rules_job)


def _rules_job(job: Job) -> tuple[dict, dict, str]:
    def progress(fraction: float, message: str) -> None:
        jobs.job_progress(job=job, fraction=fraction, message=message)

    try:
        report = _OPERATIONS[job.kind](
            project=job.project, data=job.params.get("rules"), progress=progress
        )
    except InvalidInput as exc:
        # the rules were valid when queued; the project's classes changed since
        raise Conflict(f"{exc.message}: {exc.field_errors}", code="invalid_rules") from None
    body = report.get("report", report)
    confusion = body.get("confusion", {})
    message = (
        f"{job.kind} of {body.get('n_images', 0)} image{'' if body.get('n_images', 0) == 1 else 's'}: "
        f"{confusion.get('fn', 0)} escapes, {confusion.get('fp', 0)} overkills"
    )
    timings = {"engine_ms": round(float((body.get("timings") or {}).get("total_ms", 0.0)), 1)}
    return report, timings, message
