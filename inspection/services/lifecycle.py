"""Model lifecycle: the candidate, comparing two versions, the worse-model guard.

Every Run makes a new model version. The project's *deployed* version judges the
line; the newest version after it that nobody dismissed is the *candidate*. Two
versions are compared on the evidence neither saw in training:

* the labelled project images neither was trained on (ground-truth verdicts:
  escapes and overkills; ground-truth masks: IoU), from the stored predictions;
* the held-out stroke check each version ran on itself while training
  (``metrics.loo_iou``: IoU on the strokes of images held out of one fit),
  which is the same evidence when both held out the same images.

A version that scores clearly worse than the one before it is *flagged*: the
strokes added since are named, and the engineer can undo them or keep the
previous version (both dismiss the worse one).
"""

from __future__ import annotations

import io
import logging
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from inspection.errors import Conflict
from inspection.models import DeployedHow, Image, ModelVersion, Prediction, Project, Prompt
from inspection.selectors import model_candidate
from inspection.services import engine
from inspection.services.predictions import predictions_refresh_start
from inspection.storage import bytes_read
from inspection.types import Actor
from prompting.rates import error_rates

log = logging.getLogger("inspection.lifecycle")

#: "clearly worse": the held-out stroke check falls by at least this much (IoU points) ...
LOO_DROP_MIN = 0.15
#: ... and to at most this share of the earlier version's figure
LOO_DROP_RATIO = 0.85
#: "clearly worse" on held-out ground-truth masks: IoU falls by at least this much
IOU_DROP_MIN = 0.10
#: "clearly worse" on held-out ground-truth verdicts: wrong on at least this many more
#: images, and this share of them (one image more is within the noise of a few)
WRONG_MORE_MIN = 2
WRONG_MORE_SHARE = 0.15


def model_previous(*, model_version: ModelVersion) -> ModelVersion | None:
    """The version before ``model_version`` that nobody dismissed (its baseline)."""
    return (
        ModelVersion.objects.filter(
            project_id=model_version.project_id,
            number__lt=model_version.number,
            dismissed_at__isnull=True,
        )
        .order_by("-number")
        .first()
    )


def run_deploy_how(*, project: Project) -> str:
    """Whether a Run that just trained a version deploys it, and why ("" = it doesn't).

    Called with the project row locked. The first version is deployed (there is
    nothing to compare it with); under ``auto_deploy`` every version is, until
    the project's first line inspection.
    """
    if project.deployed_model_id is None:
        return DeployedHow.FIRST
    if project.auto_deploy and not project.inspections.exists():
        return DeployedHow.AUTO
    return ""


def project_deployed_set(*, project: Project, model_version: ModelVersion, how: str) -> None:
    """Record ``model_version`` as deployed on the (locked) ``project`` row."""
    project.deployed_model = model_version
    project.deployed_at = timezone.now()
    project.deployed_how = how
    fields = ["deployed_model", "deployed_at", "deployed_how", "updated_at"]
    if project.shadow_model_id == model_version.id:  # the candidate is promoted
        project.shadow_model = None
        fields.append("shadow_model")
    project.save(update_fields=fields)
    if model_version.dismissed_at is not None:
        ModelVersion.objects.filter(id=model_version.id).update(dismissed_at=None)
        model_version.dismissed_at = None


# ------------------------------------------------------------------ comparison
@dataclass
class _Scores:
    n: int = 0
    wrong: int = 0
    escapes: int = 0
    overkills: int = 0
    n_ng: int = 0
    n_ok: int = 0
    inter: int = 0
    union: int = 0
    n_masks: int = 0

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "wrong": self.wrong,
            "escapes": self.escapes,
            "overkills": self.overkills,
            **error_rates(
                escapes=self.escapes, n_ng=self.n_ng, overkills=self.overkills, n_ok=self.n_ok
            ),
            "iou": self.inter / self.union if self.union else None,
            "n_masks": self.n_masks,
        }


def _trained_ids(mv: ModelVersion) -> set[str]:
    return {str(x["id"] if isinstance(x, dict) else x) for x in (mv.images or [])}


def _predictions_of(mv: ModelVersion, images: list[Image], ruleset_id) -> dict[str, Prediction]:
    """Each image's prediction by ``mv``: with the active rules when there is one,
    else its newest."""
    out: dict[str, Prediction] = {}
    rows = Prediction.objects.filter(model_version=mv, image__in=images).order_by(
        "-created_at", "-id"
    )
    for p in rows:
        key = str(p.image_id)
        if key not in out or (p.ruleset_id == ruleset_id and out[key].ruleset_id != ruleset_id):
            out[key] = p
    return out


def _mask_of(prediction: Prediction) -> np.ndarray | None:
    from PIL import Image as PILImage  # deferred: the web process starts without PIL

    if not prediction.mask.name:
        return None
    with PILImage.open(io.BytesIO(bytes_read(prediction.mask.name))) as im:
        return np.asarray(im.convert("L")) > 0


class _Truth:
    """An image's ground-truth mask, decoded on first use."""

    def __init__(self, image: Image, engine) -> None:
        self._image, self._engine, self._mask = image, engine, None

    def get(self) -> np.ndarray | None:
        if self._mask is None:
            self._mask = self._engine.image_mask_load(self._image)
        return self._mask


def _overlap(prediction: Prediction, image: Image, truth: _Truth) -> tuple[int, int] | None:
    """(intersection, union) pixels of a prediction's mask and the image's ground
    truth. A prediction row never changes (a new prediction is a new row) and a
    new mask is a new file, so the figures are cached under both names: the
    Images page reads the comparison on every load without decoding every mask."""
    key = f"lifecycle:overlap:{prediction.id}:{image.mask.name}"
    hit = cache.get(key)
    if hit is not None:
        return None if hit == "none" else (int(hit[0]), int(hit[1]))
    predicted, gt = _mask_of(prediction), truth.get()
    if predicted is None or gt is None or predicted.shape != gt.shape:
        cache.set(key, "none", timeout=24 * 3600)
        return None
    out = (int(np.logical_and(predicted, gt).sum()), int(np.logical_or(predicted, gt).sum()))
    cache.set(key, list(out), timeout=24 * 3600)
    return out


def _prompts_diff(baseline: ModelVersion, candidate: ModelVersion) -> dict:
    """The strokes the candidate was trained on that the baseline wasn't (added)
    and the reverse (removed), grouped by image."""
    a = {str(x) for x in baseline.prompt_ids or []}
    b = {str(x) for x in candidate.prompt_ids or []}
    added_ids, removed_ids = b - a, a - b
    out: dict[str, list] = {"added": [], "removed": []}
    rows = (
        Prompt.objects.filter(id__in=added_ids | removed_ids)
        .select_related("image")
        .order_by("created_at", "id")
    )
    groups: dict[tuple[str, str], dict] = {}
    totals: dict[str, Counter] = {"added": Counter(), "removed": Counter()}
    for p in rows:
        side = "added" if str(p.id) in added_ids else "removed"
        key = (side, str(p.image_id))
        if key not in groups:
            groups[key] = {
                "image": str(p.image_id),
                "image_name": p.image.original_name or str(p.image_id),
                "prompts": [],
                "labels": Counter(),
                "kinds": {},
            }
            out[side].append(groups[key])
        groups[key]["prompts"].append(str(p.id))
        groups[key]["labels"][p.label] += 1
        by_kind = groups[key]["kinds"].setdefault(p.label, {})
        by_kind[p.kind] = by_kind.get(p.kind, 0) + 1
        totals[side][p.kind] += 1
    for side in out.values():
        for g in side:
            g["labels"] = dict(g["labels"])
    return {
        "added": out["added"],
        "removed": out["removed"],
        "n_added": len(added_ids),
        "n_removed": len(removed_ids),
        # {kind: n} over the images: strokes, points and polygons are all labels
        "added_kinds": dict(totals["added"]),
        "removed_kinds": dict(totals["removed"]),
    }


def prompts_count_describe(kinds: dict[str, int], *, label: str = "") -> str:
    """'2 strokes and 1 polygon' for {kind: n} ('2 scratch strokes' with ``label``)."""
    named = f"{label} " if label else ""
    parts = [
        f"{n} {named}{kind}{'' if n == 1 else 's'}"
        for kind, n in sorted(kinds.items(), key=lambda kv: (kv[0] != "stroke", kv[0]))
        if n
    ]
    if not parts:
        return f"0 {named}labels"
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def _held_out_images(project: Project, *versions: ModelVersion) -> list[Image]:
    trained: set[str] = set()
    for mv in versions:
        trained |= _trained_ids(mv)
    labelled = Image.objects.filter(project=project).exclude(verdict="", mask="")
    return [im for im in labelled.order_by("created_at", "id") if str(im.id) not in trained]


def model_compare(*, candidate: ModelVersion, baseline: ModelVersion) -> dict:
    """``candidate`` against ``baseline`` on the evidence neither was trained on.

    Returns ``held_out`` (each version's escapes, overkills and IoU on the
    labelled images neither trained on, and the images whose verdict changes),
    ``strokes`` (each version's held-out stroke check), ``prompts`` (strokes
    added and removed between them, by image) and ``assessment`` (``better``,
    ``worse``, ``mixed``, ``similar`` or ``unknown``, with the reasons in words).
    """
    project = candidate.project
    if baseline.project_id != project.id:
        raise Conflict("the two versions belong to different projects", code="other_project")
    images = _held_out_images(project, candidate, baseline)
    ruleset_id = project.active_ruleset_id
    preds = {
        "baseline": _predictions_of(baseline, images, ruleset_id),
        "candidate": _predictions_of(candidate, images, ruleset_id),
    }
    scores = {"baseline": _Scores(), "candidate": _Scores()}
    changes = []
    for im in images:
        key = str(im.id)
        pb, pc = preds["baseline"].get(key), preds["candidate"].get(key)
        if pb is None or pc is None:
            continue  # compared only where both judged the image
        truth = _Truth(im, engine) if im.mask else None
        for side, p in (("baseline", pb), ("candidate", pc)):
            s = scores[side]
            s.n += 1
            if im.verdict:
                s.n_ng += im.verdict == "NG"
                s.n_ok += im.verdict == "OK"
                if p.verdict != im.verdict:
                    s.wrong += 1
                    s.escapes += im.verdict == "NG"
                    s.overkills += im.verdict == "OK"
            if truth is not None:
                overlap = _overlap(p, im, truth)
                if overlap is not None:
                    s.n_masks += 1
                    s.inter += overlap[0]
                    s.union += overlap[1]
        if pb.verdict != pc.verdict:
            effect = "changed"
            if im.verdict:
                effect = "fixed" if pc.verdict == im.verdict else "broke"
            changes.append(
                {
                    "image": key,
                    "image_name": im.original_name or key,
                    "thumbnail_url": f"/api/v1/images/{key}/thumbnail/",
                    "truth": im.verdict or None,
                    "baseline": pb.verdict,
                    "candidate": pc.verdict,
                    "effect": effect,
                }
            )
    # a version that continued from another's weights (warm start) ran no held-out
    # check of its own: the figure it carries is the earlier version's
    loo = {
        side: None
        if (mv.config or {}).get("warm_start_from")
        else (mv.metrics or {}).get("loo_iou")
        for side, mv in (("baseline", baseline), ("candidate", candidate))
    }
    not_measured = [
        mv.number for mv in (baseline, candidate) if (mv.config or {}).get("warm_start_from")
    ]
    held_b = sorted((baseline.metrics or {}).get("loo_image_ids") or [])
    held_c = sorted((candidate.metrics or {}).get("loo_image_ids") or [])
    held = {k: v.to_dict() for k, v in scores.items()}
    out = {
        "candidate": {"id": str(candidate.id), "number": candidate.number},
        "baseline": {"id": str(baseline.id), "number": baseline.number},
        "held_out": {**held, "n_images": len(images), "changes": changes},
        "strokes": {
            **loo,
            "same_images": bool(held_b) and held_b == held_c,
            "images": held_c,
            # versions that continued from an earlier one's weights: no check of their own
            "not_measured": not_measured,
        },
        "prompts": _prompts_diff(baseline, candidate),
    }
    out["assessment"] = _assess(out)
    return out


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _assess(c: dict) -> dict:
    """Worse / better / mixed / similar / unknown, and why (sentences)."""
    worse: list[str] = []
    better: list[str] = []
    b, n = c["baseline"]["number"], c["candidate"]["number"]
    held = c["held_out"]
    hb, hc = held["baseline"], held["candidate"]
    evidence = False
    if hb["n"]:
        evidence = True
        d = hc["wrong"] - hb["wrong"]
        plural = "s" if hb["n"] != 1 else ""
        clear = max(WRONG_MORE_MIN, math.ceil(WRONG_MORE_SHARE * hb["n"]))
        if d >= clear:
            worse.append(
                f"wrong on {hc['wrong']} of {hb['n']} labelled image{plural} neither was "
                f"trained on (v{b}: {hb['wrong']})"
            )
        elif -d >= clear:
            better.append(
                f"wrong on {hc['wrong']} of {hb['n']} labelled image{plural} neither was "
                f"trained on (v{b}: {hb['wrong']})"
            )
        if hb["iou"] is not None and hc["iou"] is not None:
            if hb["iou"] - hc["iou"] >= IOU_DROP_MIN:
                worse.append(f"IoU on held-out masks {_fmt(hb['iou'])} → {_fmt(hc['iou'])}")
            elif hc["iou"] - hb["iou"] >= IOU_DROP_MIN:
                better.append(f"IoU on held-out masks {_fmt(hb['iou'])} → {_fmt(hc['iou'])}")
    s = c["strokes"]
    if s["baseline"] is not None and s["candidate"] is not None:
        evidence = True
        where = "same held-out images" if s["same_images"] else "each on its own held-out images"
        text = f"held-out stroke check {_fmt(s['baseline'])} → {_fmt(s['candidate'])} ({where})"
        drop = s["baseline"] - s["candidate"]
        if drop >= LOO_DROP_MIN and s["candidate"] <= LOO_DROP_RATIO * s["baseline"]:
            worse.append(text)
        elif -drop >= LOO_DROP_MIN:
            better.append(text)
    if worse and better:
        verdict = "mixed"
    elif worse:
        verdict = "worse"
    elif better:
        verdict = "better"
    else:
        verdict = "similar" if evidence else "unknown"
    if verdict == "worse":
        summary = f"v{n} scores clearly worse than v{b}: " + "; ".join(worse)
    elif verdict == "better":
        summary = f"v{n} scores better than v{b}: " + "; ".join(better)
    elif verdict == "mixed":
        summary = (
            f"v{n} against v{b}: worse on " + "; ".join(worse) + ", better on " + "; ".join(better)
        )
    elif verdict == "similar":
        summary = f"v{n} scores about the same as v{b} on the evidence neither was trained on"
    else:
        summary = (
            f"no evidence to compare v{n} with v{b}: no labelled image is held out of both, "
            "and no held-out stroke check"
        )
    return {"verdict": verdict, "worse": worse, "better": better, "summary": summary}


def model_guard(*, model_version: ModelVersion) -> dict | None:
    """The comparison of ``model_version`` with the version before it when it
    scores clearly worse (or mixed), else None."""
    previous = model_previous(model_version=model_version)
    if previous is None:
        return None
    c = model_compare(candidate=model_version, baseline=previous)
    if c["assessment"]["verdict"] not in ("worse", "mixed"):
        return None
    return c


def project_candidate_summary(*, project: Project) -> dict:
    """What the Images page shows about versions: deployed, candidate, the
    candidate against the deployed version, and the guard (candidate or the
    deployed version against the version before it)."""
    deployed = project.deployed_model
    candidate = model_candidate(project=project)
    out: dict = {
        "deployed": _brief(deployed),
        "deployed_at": project.deployed_at,
        "deployed_how": project.deployed_how or None,
        "auto_deploy": project.auto_deploy,
        "auto_deploy_active": project.auto_deploy and not project.inspections.exists(),
        "candidate": _brief(candidate),
        "comparison": None,
        "guard": None,
    }
    if candidate is not None and deployed is not None:
        out["comparison"] = model_compare(candidate=candidate, baseline=deployed)
    newest = candidate or deployed
    if newest is not None:
        out["guard"] = model_guard(model_version=newest)
    return out


def _brief(mv: ModelVersion | None) -> dict | None:
    if mv is None:
        return None
    return {
        "id": str(mv.id),
        "number": mv.number,
        "created_at": mv.created_at,
        "loo_iou": (mv.metrics or {}).get("loo_iou"),
    }


# ------------------------------------------------------------------ decisions
def model_dismiss(*, model_version: ModelVersion, user: Actor = None) -> ModelVersion | None:
    """Keep the previous version: ``model_version`` is no longer the candidate.

    If it was deployed, the version before it is deployed again. Returns the
    version kept (None when there is none before it).
    """
    previous = model_previous(model_version=model_version)
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=model_version.project_id)
        was_deployed = project.deployed_model_id == model_version.id
        if was_deployed and previous is None:
            raise Conflict(
                "this is the only version: there is no earlier version to keep",
                code="no_previous_version",
            )
        ModelVersion.objects.filter(id=model_version.id).update(dismissed_at=timezone.now())
        model_version.dismissed_at = timezone.now()
        if project.shadow_model_id == model_version.id:
            project.shadow_model = None
            project.save(update_fields=["shadow_model", "updated_at"])
        if was_deployed:
            project_deployed_set(project=project, model_version=previous, how=DeployedHow.MANUAL)
    if was_deployed:
        predictions_refresh_start(
            project=project, user=user, reason=f"kept model v{previous.number}"
        )
    log.info(
        "model v%s dismissed (project %s); kept %s",
        model_version.number,
        project.id,
        f"v{previous.number}" if previous else "none",
    )
    return previous


def model_strokes_undo(*, model_version: ModelVersion, user: Actor = None) -> dict:
    """Undo the stroke changes between the previous version and ``model_version``:
    strokes added since are deleted (soft: versions keep naming them), strokes
    removed since come back; ``model_version`` is dismissed. Returns counts."""
    previous = model_previous(model_version=model_version)
    if previous is None:
        raise Conflict(
            "this is the first version: there are no strokes added since an earlier one",
            code="no_previous_version",
        )
    diff = _prompts_diff(previous, model_version)
    added = [pid for g in diff["added"] for pid in g["prompts"]]
    removed = [pid for g in diff["removed"] for pid in g["prompts"]]
    now = timezone.now()
    with transaction.atomic():
        n_deleted = Prompt.objects.filter(id__in=added, deleted_at__isnull=True).update(
            deleted_at=now
        )
        n_restored = Prompt.objects.filter(id__in=removed, deleted_at__isnull=False).update(
            deleted_at=None
        )
    kept = model_dismiss(model_version=model_version, user=user)
    return {
        "deleted": n_deleted,
        "restored": n_restored,
        "kept": _brief(kept),
        "images": sorted({g["image_name"] for g in diff["added"] + diff["removed"]}),
    }


def run_summary(*, model_version: ModelVersion, result: dict, message: str) -> tuple[dict, str]:
    """A finished Run's result and message: deployed (and why) or a candidate, and
    the guard's warning when the version scores clearly worse than the one before."""
    how = result.get("deployed_how")
    if how == DeployedHow.FIRST:
        message += "; deployed (the project had no deployed model)"
    elif how == DeployedHow.AUTO:
        message += "; deployed automatically (auto-deploy, until the first line inspection)"
    else:
        message += "; a candidate: the line still uses the deployed version"
    guard = model_guard(model_version=model_version)
    result = {**result, "guard": None}
    if guard is not None:
        message += f". Warning: {guard['assessment']['summary']}"
        result["guard"] = {
            "verdict": guard["assessment"]["verdict"],
            "summary": guard["assessment"]["summary"],
            "previous": guard["baseline"],
            "prompts_added": guard["prompts"]["added"],
            "prompts_removed": guard["prompts"]["removed"],
        }
    return result, message
