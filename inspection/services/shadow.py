"""Shadow mode: a candidate model judges the line's images beside the deployed one.

Before a new model version decides anything, it can run in the shadow: every
inspection is also judged by it, with the same rules, and its decision is stored
on the inspection (``Inspection.shadow``) while the line gets the deployed
model's verdict. The comparison says how often the two agree and, on the
inspections a person reviewed, which of them was right: the escapes and
overkills the candidate would have had on real production parts.
"""

from __future__ import annotations

import statistics

from django.db import transaction
from django.db.models import Q

from inspection.errors import Conflict
from inspection.models import Inspection, ModelVersion, Project


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
    return Q(shadow__verdict="OK", verdict="NG") | Q(shadow__verdict="NG", verdict="OK")


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def model_shadow_compare(*, model_version: ModelVersion) -> dict:
    """How ``model_version`` judged the inspections it shadowed, against the
    deployed decisions, and against people's reviews where there are some."""
    project = model_version.project
    rows = (
        Inspection.objects.filter(project=project, shadow__model_version=str(model_version.id))
        .select_related("review")
        .values_list("verdict", "shadow", "review__verdict")
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
    for verdict, shadow, truth in rows:
        if shadow.get("verdict") not in ("OK", "NG"):
            errors += 1
            continue
        n += 1
        other = shadow["verdict"]
        agree += other == verdict
        ng_ok += verdict == "NG" and other == "OK"
        ok_ng += verdict == "OK" and other == "NG"
        if shadow.get("engine_ms") is not None:
            engine_ms.append(float(shadow["engine_ms"]))
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
