"""Shadow mode: a candidate model judges the line's images beside the deployed one.

Before a new model version decides anything, it can run in the shadow: every
inspection is also judged by it, with the rules the line used, by a task that
runs after the line got the deployed model's verdict (so the line's latency does
not change), and stored as a ``ShadowDecision``. The comparison says how often
the two agree and, on the inspections a person reviewed, which of them was
right: the escapes and overkills the candidate would have had on real parts.

The image waits for the task under ``projects/<id>/shadow/`` and is deleted by
it; ``manage.py orphans`` finds any a lost task left behind.
"""

from __future__ import annotations

import logging
import statistics

from django.db import transaction
from django.db.models import Q

from inspection import queue
from inspection.errors import Conflict
from inspection.models import Inspection, ModelVersion, Project, ShadowDecision
from inspection.services import engine
from inspection.services.images import image_decode
from inspection.storage import bytes_read, bytes_save, file_delete, name_new
from inspection.types import RowId

log = logging.getLogger("inspection.shadow")


def model_shadow_start(*, model_version: ModelVersion) -> ModelVersion:
    """Make ``model_version`` the project's shadow model (replacing any other);
    409 when it is the deployed model."""
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=model_version.project_id)
        if project.deployed_model_id == model_version.id:
            raise Conflict(
                f"model v{model_version.number} is the deployed model: shadow another version",
                code="deployed",
            )
        project.shadow_model = model_version
        project.save(update_fields=["shadow_model", "updated_at"])
    return model_version


def model_shadow_stop(*, model_version: ModelVersion) -> None:
    """Stop shadowing ``model_version`` (its comparison stays readable); 409 when
    it is not the project's shadow model."""
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=model_version.project_id)
        if project.shadow_model_id != model_version.id:
            raise Conflict(f"model v{model_version.number} is not in the shadow", code="not_shadow")
        project.shadow_model = None
        project.save(update_fields=["shadow_model", "updated_at"])


def shadow_disagrees_q() -> Q:
    """Inspections where the shadow model's verdict differs from the line's."""
    return Q(shadow_decision__verdict="OK", verdict="NG") | Q(
        shadow_decision__verdict="NG", verdict="OK"
    )


def shadow_decide_start(
    *, inspection: Inspection, model_version: ModelVersion, data: bytes, ext: str
) -> None:
    """Keep the inspected bytes for the shadow task and queue it after commit. A
    broker that is down costs this inspection its shadow decision, nothing else."""
    name = bytes_save(name_new(inspection.project_id, "shadow", ext, stem=inspection.id.hex), data)

    def failed(exc: Exception) -> None:  # the line's answer never depends on it
        log.error("inspection %s: shadow decision not queued: %s", inspection.id, exc)
        file_delete(name)

    queue.task_enqueue(
        queue.SHADOW_DECIDE, [str(inspection.id), str(model_version.id), name], failed=failed
    )


def shadow_decide(
    *, inspection_id: RowId, model_version_id: RowId, name: str
) -> ShadowDecision | None:
    """The shadow task's work: decide the stored image with ``model_version_id``
    and the inspection's own rules, record it, delete the image. Safe to run
    twice (the second finds the decision); a model that fails is recorded."""
    # deferred: scipy and PIL load on first use
    from prompting.images import image_to_rgb8
    from prompting.pipeline import inspect_image

    try:
        existing = ShadowDecision.objects.filter(inspection_id=inspection_id).first()
        inspection = (
            Inspection.objects.select_related("project", "ruleset").filter(id=inspection_id).first()
        )
        mv = ModelVersion.objects.filter(id=model_version_id).first()
        if existing is not None or inspection is None or mv is None:
            return existing
        record = {"inspection": inspection, "model_version": mv}
        try:
            decoded = image_decode(bytes_read(name), field="file")
            rgb8 = image_to_rgb8(decoded.pixels, bit_depth=decoded.bit_depth)
            learner = engine.learner_get(mv)
            result = inspect_image(
                rgb8,
                learner=learner,
                backend=engine.backend_for(mv, learner),
                ruleset=engine.ruleset_get(inspection.ruleset),
                px_per_mm=inspection.project.px_per_mm,
                cache=None,
                input_mode="off",  # the deployed model's check says what the image is
            )
        except Exception as exc:  # noqa: BLE001 - recorded; the line's decision stands
            log.warning(
                "shadow model v%s failed on inspection %s: %s", mv.number, inspection_id, exc
            )
            record["error"] = f"{type(exc).__name__}: {exc}"[:500]
        else:
            d = result.decision
            record.update(
                verdict=d.verdict,
                severity=d.severity or "",
                reasons=[r.message for r in d.reasons][:20],
                n_blobs=len(d.blobs),
                engine_ms=round(float(result.timings.get("total_ms", 0.0)), 2),
            )
        decision, _ = ShadowDecision.objects.get_or_create(
            inspection=inspection, defaults={k: v for k, v in record.items() if k != "inspection"}
        )
        log.info(
            "shadow v%s on inspection %s: %s (line %s) in %s ms%s",
            mv.number,
            inspection.id,
            decision.verdict or "failed",
            inspection.verdict,
            decision.engine_ms,
            f": {decision.error}" if decision.error else "",
        )
        return decision
    finally:
        file_delete(name)


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def model_shadow_compare(*, model_version: ModelVersion) -> dict:
    """How ``model_version`` judged the inspections it shadowed, against the
    deployed decisions, and against people's reviews where there are some."""
    project = model_version.project
    rows = ShadowDecision.objects.filter(model_version=model_version).values_list(
        "inspection__verdict", "verdict", "engine_ms", "inspection__review__verdict"
    )
    n = errors = agree = ng_ok = ok_ng = 0
    engine_ms = []
    reviewed = {"n": 0, "deployed_right": 0, "shadow_right": 0}
    wrong = {
        "deployed_escapes": 0,
        "shadow_escapes": 0,
        "deployed_overkills": 0,
        "shadow_overkills": 0,
    }
    for verdict, other, ms, truth in rows:
        if other not in ("OK", "NG"):
            errors += 1
            continue
        n += 1
        agree += other == verdict
        ng_ok += verdict == "NG" and other == "OK"
        ok_ng += verdict == "OK" and other == "NG"
        if ms is not None:
            engine_ms.append(float(ms))
        if truth in ("OK", "NG"):
            reviewed["n"] += 1
            reviewed["deployed_right"] += verdict == truth
            reviewed["shadow_right"] += other == truth
            for who, said in (("deployed", verdict), ("shadow", other)):
                wrong[f"{who}_escapes"] += truth == "NG" and said == "OK"
                wrong[f"{who}_overkills"] += truth == "OK" and said == "NG"
    return {
        "model_version": str(model_version.id),
        "model_number": model_version.number,
        "active": project.shadow_model_id == model_version.id,
        "n_inspections": n,
        "n_errors": errors,
        "agree": agree,
        "agreement_rate": _rate(agree, n),
        "deployed_ng_shadow_ok": ng_ok,
        "deployed_ok_shadow_ng": ok_ng,
        "engine_ms_median": round(statistics.median(engine_ms), 2) if engine_ms else None,
        "reviewed": {**reviewed, **wrong},
    }
