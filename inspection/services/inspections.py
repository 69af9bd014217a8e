"""Production inspections: synchronous for one image, a batch job for many."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inspection.errors import Conflict, InvalidInput
from inspection.models import Inspection, Job, KeepImages, ModelVersion, Project, RuleSet
from inspection.services import engine, mqtt, webhooks
from inspection.services.chunks import FanOut, chunk_sizes, fan_out_register, job_fan_out
from inspection.services.images import IMAGE_EXTENSIONS, filename_sanitise, image_decode
from inspection.services.jobs import (
    job_create,
    job_enqueue,
    job_enqueue_raise_if_failed,
    job_execute,
)
from inspection.services.rulesets import ruleset_active_get
from inspection.services.segment import mask_rle
from inspection.services.shadow import shadow_decide_start
from inspection.storage import bytes_read, bytes_save, name_new, prefix_delete, project_prefix
from inspection.types import Actor, RowId
from prompting.inputcheck import DEFAULT_MARGIN
from prompting.interchange import coco_rle_encode

log = logging.getLogger("inspection.inspections")


def _deployed(project: Project):
    """(deployed ModelVersion, active RuleSet, shadow ModelVersion or None) in one
    query; 409 when nothing is deployed."""
    fresh = Project.objects.select_related("deployed_model", "active_ruleset", "shadow_model").get(
        id=project.id
    )
    if fresh.deployed_model is None:
        raise Conflict(
            "no model is deployed for this project: train one (the first is deployed) or deploy a version",
            code="no_model",
        )
    ruleset = fresh.active_ruleset or ruleset_active_get(project=project)
    shadow = fresh.shadow_model if fresh.shadow_model_id != fresh.deployed_model_id else None
    return fresh.deployed_model, ruleset, shadow


def inspection_image_keep(
    *, policy: str, verdict: str, uncertainty: float | None, input_ok: bool | None = None
) -> bool:
    """Whether an inspection with ``verdict`` and ``uncertainty`` keeps its image.
    Under ``unsure``, an image the input check flagged (``input_ok`` False) is
    kept too: it is the one a person should look at.

    >>> inspection_image_keep(policy="ng", verdict="OK", uncertainty=0.9)
    False
    >>> inspection_image_keep(policy="unsure", verdict="OK", uncertainty=0.0, input_ok=False)
    True
    """
    if policy == KeepImages.ALL:
        return True
    if policy == KeepImages.NG:
        return verdict == "NG"
    if policy == KeepImages.UNSURE:
        return (
            verdict == "NG"
            or input_ok is False
            or (uncertainty or 0.0) >= settings.INSPECTION_KEEP_UNSURE_MIN
        )
    return False


def inspection_window_ng_rate(*, project: Project, window: int) -> float | None:
    """The NG share of the project's newest ``window`` inspections (None until there
    are that many)."""
    recent = list(
        Inspection.objects.filter(project=project)
        .order_by("-created_at", "-id")
        .values_list("verdict", flat=True)[:window]
    )
    return sum(v == "NG" for v in recent) / window if len(recent) == window else None


def line_alert_check(*, project: Project) -> str | None:
    """Raise or clear the project's line alert after an inspection.

    The alert compares the NG share of the last ``alert_window`` inspections
    with ``alert_ng_rate`` (off when that is null; silent until the window is
    full). It changes state once per crossing: the first call that sees the rate
    reach the level raises it (``line.alert`` webhook, state "raised"), the first
    that sees it below clears it ("cleared"); a conditional update makes only
    one of several concurrent inspections announce a crossing. Returns the new
    state, or None when nothing changed.
    """
    if project.alert_ng_rate is None:
        return None  # off (as the caller's row says): no query on the inspect path
    fresh = Project.objects.filter(id=project.id).values(
        "alert_ng_rate", "alert_window", "alert_active"
    )[0]
    level, window = fresh["alert_ng_rate"], max(1, fresh["alert_window"])
    if level is None:
        return None
    rate = inspection_window_ng_rate(project=project, window=window)
    if rate is None:
        return None
    raise_it = rate >= level
    if raise_it == fresh["alert_active"]:
        return None
    now = timezone.now()
    changed = Project.objects.filter(id=project.id, alert_active=not raise_it).update(
        alert_active=raise_it, alert_changed_at=now
    )
    if not changed:
        return None  # another inspection announced this crossing
    state = "raised" if raise_it else "cleared"
    log.warning(
        "project %s: line alert %s (NG rate %.1f %% over the last %d, level %.1f %%)",
        project.id,
        state,
        100 * rate,
        window,
        100 * level,
    )
    payload = {
        "state": state,
        "ng_rate": rate,
        "alert_ng_rate": level,
        "window": window,
        "changed_at": now.isoformat(),
    }
    webhooks.webhook_event_emit(project=project, event="line.alert", payload=payload)
    if project.mqtt_publish:
        mqtt.mqtt_message_record(
            project=project,
            event=mqtt.ALERT_EVENT,
            key=f"{mqtt.ALERT_EVENT}:{project.id}:{now.isoformat()}",
            payload=payload,
        )
    return state


def inspection_run(
    *,
    project: Project,
    data: bytes,
    filename: str = "",
    station: str = "",
    part_id: str = "",
    user: Actor = None,
    job: Job | None = None,
) -> Inspection:
    """Inspect one image with the deployed model and active rules; log it immutably.
    See :func:`inspection_run_result` (this is it without the engine's result)."""
    return inspection_run_result(
        project=project,
        data=data,
        filename=filename,
        station=station,
        part_id=part_id,
        user=user,
        job=job,
    )[0]


def inspection_run_result(
    *,
    project: Project,
    data: bytes,
    filename: str = "",
    station: str = "",
    part_id: str = "",
    user: Actor = None,
    job: Job | None = None,
) -> tuple[Inspection, Any]:
    """Inspect one image with the deployed model and active rules; log it immutably.
    Returns ``(Inspection, prompting.pipeline.InspectionResult)``: the logged row
    and the engine's result (its ``decision.label_map`` (H, W) uint8 is the class
    mask the decision was made on, for protocols that answer with masks).

    The file as sent is stored with the log entry when the project's
    ``keep_inspection_images`` policy asks for it (for review and retraining).
    With a shadow model set, a task judges the same image with the same rules
    after this returns (a ``ShadowDecision``); the verdict is the deployed
    model's. ``Inspection.timings``: ``decode_ms``, ``predict_ms``,
    ``rules_ms``, ``input_ms``, ``engine_ms`` (predict + rules) and ``total_ms``
    (service side).
    """
    decided = _inspection_decide(project=project, data=data)
    inspection = _inspection_log(
        decided,
        project=project,
        filename=filename,
        station=station,
        part_id=part_id,
        user=user,
        job=job,
    )
    return inspection, decided.result


def inspection_classes(inspection: Inspection) -> list[str]:
    """The classes of the model that judged ``inspection``, in its order (its
    decision's label map holds k + 1 for ``classes[k]``)."""
    return list(engine.learner_get(inspection.model_version).classes)


def inspection_masks(*, inspection: Inspection, result: Any) -> dict:
    """The pixels ``inspection``'s decision was made on, for a line client to draw,
    measure or store: ``{"size": [H, W], "encoding": "coco_rle", "masks": [...]}``,
    one entry per class of the deployed model in its order, then ``"anomaly"``
    when an anomaly rule reported regions (``prompting.rules.Decision.masks``).
    Each entry: ``class``, ``area_px`` and ``rle``, a compressed COCO RLE
    (column-major; ``pycocotools.mask.decode`` reads it). ``result``: the
    ``prompting.pipeline.InspectionResult`` of :func:`inspection_run_result`."""
    return _masks_answer(inspection_classes(inspection), result.decision)


def _masks_answer(classes: list[str], decision: Any, *, encoding: str = "coco_rle") -> dict:
    """``decision``'s masks (one per class, then ``anomaly``) in ``encoding``:
    ``coco_rle`` (compressed, column-major) or ``rle`` (row-major run lengths
    starting with a run of 0s, as the segment route answers)."""
    h, w = np.asarray(decision.label_map).shape
    encode = coco_rle_encode if encoding == "coco_rle" else (lambda m: mask_rle(m)["counts"])
    return {
        "size": [int(h), int(w)],
        "encoding": encoding,
        "masks": [
            {"class": name, "area_px": int(mask.sum()), "rle": encode(mask)}
            for name, mask in decision.masks(classes).items()
        ],
    }


MASK_ENCODINGS = ("coco_rle", "rle")


def inspection_masks_replay(*, inspection: Inspection, encoding: str = "coco_rle") -> dict:
    """The pixels a logged inspection's decision was made on, for the dashboard
    and for a line client whose answer carried no masks (a batch's job, an MQTT
    message or a webhook): its kept image judged again by the model version and
    the rules version that judged it (both kept while an inspection names them),
    at the scale it was judged at (the project's current ``px_per_mm`` for
    inspections logged before the scale was recorded). The answer is
    :func:`inspection_masks`' plus ``verdict`` and ``blobs`` (the count) of this
    replay, and ``matches_logged``: whether they equal the log's. 409 when the
    image was not kept."""
    # deferred: PIL loads on first use
    from prompting.images import image_to_rgb8

    if encoding not in MASK_ENCODINGS:
        raise InvalidInput(
            "bad encoding",
            field_errors={"encoding": [f"one of: {', '.join(MASK_ENCODINGS)}"]},
        )
    if not inspection.image_file.name:
        raise Conflict(
            "this inspection's image was not kept (the project's keep_inspection_images "
            "policy, or it has expired), so its pixels cannot be recomputed",
            code="image_not_kept",
        )
    decoded = image_decode(bytes_read(inspection.image_file.name), field="file")
    result = _judge(
        image_to_rgb8(decoded.pixels, bit_depth=decoded.bit_depth),
        mv=inspection.model_version,
        ruleset=inspection.ruleset,
        px_per_mm=(
            inspection.px_per_mm
            if inspection.px_per_mm is not None
            else inspection.project.px_per_mm
        ),
    )
    decision = result.decision.to_dict()
    n_blobs = len(decision.get("blobs") or [])
    return {
        **_masks_answer(inspection_classes(inspection), result.decision, encoding=encoding),
        "verdict": decision["verdict"],
        "blobs": n_blobs,
        "matches_logged": decision["verdict"] == inspection.verdict
        and n_blobs == len(inspection.blobs or []),
    }


@dataclass
class _Decided:
    """One image judged, nothing written to the database yet (:func:`_inspection_decide`)."""

    id: uuid.UUID
    mv: ModelVersion
    ruleset: RuleSet
    shadow_mv: ModelVersion | None
    decoded: Any  # prompting.images.DecodedImage
    data: bytes
    result: Any  # prompting.pipeline.InspectionResult
    decision: dict
    input_record: dict
    input_ok: bool | None
    total_ms: float
    timings: dict
    kept: str


def _judge(
    rgb8: np.ndarray,
    *,
    mv: ModelVersion,
    ruleset: RuleSet,
    px_per_mm: float | None,
    input_mode: str = "off",
    input_margin: float = DEFAULT_MARGIN,
) -> Any:
    """``prompting.pipeline.InspectionResult`` of ``rgb8`` by model version ``mv``
    and rules version ``ruleset``; no cache (production images are seen once)."""
    # deferred: scipy loads on first use
    from prompting.pipeline import inspect_image

    learner = engine.learner_get(mv)
    return inspect_image(
        rgb8,
        learner=learner,
        backend=engine.backend_for(mv, learner),
        ruleset=engine.ruleset_get(ruleset),
        px_per_mm=px_per_mm,
        cache=None,
        input_mode=input_mode,
        input_margin=input_margin,
    )


def _inspection_decide(*, project: Project, data: bytes) -> _Decided:
    """Decode, predict and apply the rules; store the file when the project keeps
    it. Reads rows but writes none, so a batch runs it outside its transaction."""
    # deferred: PIL loads on first use
    from prompting.images import image_to_rgb8

    t0 = time.perf_counter()
    mv, ruleset, shadow_mv = _deployed(project)
    decoded = image_decode(data, field="file")
    rgb8 = image_to_rgb8(decoded.pixels, bit_depth=decoded.bit_depth)
    t_decode = time.perf_counter() - t0
    result = _judge(
        rgb8,
        mv=mv,
        ruleset=ruleset,
        px_per_mm=project.px_per_mm,
        input_mode=project.input_check,
        input_margin=project.input_check_margin,
    )
    decision = result.decision.to_dict()
    check = result.input_check
    input_record = {"mode": project.input_check, **check.to_dict()} if check else {}
    input_ok = check.ok if check is not None and check.checked else None
    total_ms = (time.perf_counter() - t0) * 1000
    timings = {
        "decode_ms": round(t_decode * 1000, 2),
        **{k: round(float(v), 2) for k, v in result.timings.items()},
        "engine_ms": round(float(result.timings.get("total_ms", 0.0)), 2),
        "total_ms": round(total_ms, 2),
    }
    inspection_id = uuid.uuid4()
    kept = ""
    if inspection_image_keep(
        policy=project.keep_inspection_images,
        verdict=decision["verdict"],
        uncertainty=result.decision.uncertainty,
        input_ok=input_ok,
    ):
        ext = IMAGE_EXTENSIONS.get(decoded.format, "bin")
        kept = bytes_save(name_new(project.id, "inspections", ext, stem=inspection_id.hex), data)
    return _Decided(
        id=inspection_id, mv=mv, ruleset=ruleset, shadow_mv=shadow_mv, decoded=decoded,
        data=data, result=result, decision=decision, input_record=input_record,
        input_ok=input_ok, total_ms=total_ms, timings=timings, kept=kept,
    )  # fmt: skip


def _inspection_log(
    d: _Decided,
    *,
    project: Project,
    filename: str,
    station: str,
    part_id: str,
    user: Actor,
    job: Job | None,
) -> Inspection:
    """Write a decided inspection: its log row, MQTT message, webhook events, the
    shadow model's task and the line alert (short writes only)."""
    decision, input_ok, input_record, mv, ruleset = (
        d.decision, d.input_ok, d.input_record, d.mv, d.ruleset
    )  # fmt: skip
    inspection = Inspection.objects.create(
        id=d.id,
        project=project,
        image_sha256=d.decoded.sha256,
        image_name=filename_sanitise(filename),
        width=d.decoded.width,
        height=d.decoded.height,
        model_version=mv,
        ruleset=ruleset,
        verdict=decision["verdict"],
        severity=decision.get("severity") or "",
        reasons=decision.get("reasons", []),
        blobs=decision.get("blobs", []),
        uncertainty=d.result.decision.uncertainty,
        latency_ms=round(d.total_ms, 2),
        timings=d.timings,
        station=(station or "")[:100],
        part_id=(part_id or "")[:200],
        image_file=d.kept,
        input_check=input_record,
        input_ok=input_ok,
        px_per_mm=project.px_per_mm,
        job=job,
        created_by=user if user and user.is_authenticated else None,
    )
    payload = {
        "inspection": str(inspection.id),
        "verdict": inspection.verdict,
        "severity": inspection.severity,
        "reasons": inspection.reasons,
        "station": inspection.station,
        "part_id": inspection.part_id,
        "image_sha256": inspection.image_sha256,
        "uncertainty": inspection.uncertainty,
        "input_ok": input_ok,
        "model_version": str(mv.id),
        "rules_version": ruleset.version,
        # the image was kept: GET /inspections/{id}/masks/ gives the decision's pixels
        "image_kept": bool(d.kept),
    }
    if project.mqtt_publish:
        mqtt.mqtt_message_record(
            project=project,
            event=mqtt.DECISION_EVENT,
            key=f"{mqtt.DECISION_EVENT}:{inspection.id}",
            payload=payload,
            station=inspection.station,
        )
    if inspection.verdict == "NG" or input_ok is False:
        if inspection.verdict == "NG":
            webhooks.webhook_event_emit(project=project, event="inspection.ng", payload=payload)
        if input_ok is False:
            issues = input_record.get("issues", [])
            webhooks.webhook_event_emit(
                project=project,
                event="inspection.input",
                payload={**payload, "input_mode": project.input_check, "issues": issues},
            )
    if d.shadow_mv is not None:
        ext = IMAGE_EXTENSIONS.get(d.decoded.format, "bin")
        shadow_decide_start(inspection=inspection, model_version=d.shadow_mv, data=d.data, ext=ext)
    line_alert_check(project=project)
    return inspection


def inspection_batch_start(
    *,
    project: Project,
    files: list[tuple[str, bytes]],
    station: str = "",
    part_id: str = "",
    user: Actor = None,
) -> Job:
    """Store the uploads under the job's folder and queue them (202)."""
    _deployed(project)
    with transaction.atomic():
        job = job_create(project=project, kind=Job.Kind.INSPECT_BATCH, user=user)
        items = []
        for i, (name, data) in enumerate(files):
            stored = bytes_save(f"{project_prefix(project.id)}/batches/{job.id.hex}/{i}.bin", data)
            items.append({"name": filename_sanitise(name), "file": stored})
        job.params = {"items": items, "station": station[:100], "part_id": part_id[:200]}
        job.message = f"queued: {len(items)} image{'' if len(items) == 1 else 's'}"
        job.save(update_fields=["params", "message"])
        job_enqueue(job=job)
    return job_enqueue_raise_if_failed(job=job)


def inspection_batch_run(*, job_id: RowId, task_id: str = "") -> None:
    job_execute(job_id=job_id, task_id=task_id, work=_batch)


def _batch(job: Job) -> None:
    """Fan the uploads out to the workers in chunks (``services.chunks``)."""
    n = len(job.params.get("items", []))
    size = max(1, settings.PROPAGATION_CHUNK)
    job_fan_out(
        job=job,
        items=list(range(n)),
        sizes=chunk_sizes(n, first=0, first_size=size, size=size),
        start=0.0,
        span=1.0,
    )
    return None  # the last chunk ends the job


def _batch_chunk_run(job: Job, chunk, ctx) -> None:
    """Inspect the uploads of one chunk; each inspection and the chunk's count of
    finished uploads commit together, so a chunk run again resumes exactly."""
    items = job.params.get("items", [])
    ctx.check()
    for i in chunk.items[chunk.done :]:
        item = items[int(i)]
        # the prediction runs outside the transaction: on SQLite a transaction holds
        # the database's write lock, which the line's own inspections wait for
        try:
            decided = _inspection_decide(project=job.project, data=bytes_read(item["file"]))
        except InvalidInput as exc:
            decided = None
            stats = {
                "counts": {"error": 1},
                "errors": [{"index": int(i), "name": item.get("name", ""), "error": exc.message}],
            }
        with transaction.atomic():
            if decided is not None:
                ins = _inspection_log(
                    decided,
                    project=job.project,
                    filename=item.get("name", ""),
                    station=job.params.get("station", ""),
                    part_id=job.params.get("part_id", ""),
                    user=job.created_by,
                    job=job,
                )
                stats = {"counts": {ins.verdict: 1}, "latency_ms": ins.latency_ms, "n_ok": 1}
            ctx.item_done(stats)


def _batch_finish(job: Job, totals: dict) -> tuple[dict, dict, str]:
    prefix_delete(f"{project_prefix(job.project_id)}/batches/{job.id.hex}")
    n = len(job.params.get("items", []))
    counts = {"OK": 0, "NG": 0, "error": 0, **(totals.get("counts") or {})}
    errors = sorted(totals.get("errors") or [], key=lambda e: e["index"])
    n_ok = int(totals.get("n_ok") or 0)
    return (
        {"n_images": n, "counts": counts, "errors": errors[:100]},
        {
            "mean_latency_ms": round(float(totals.get("latency_ms") or 0.0) / n_ok, 2)
            if n_ok
            else None
        },
        f"{n} image{'' if n == 1 else 's'} inspected: {counts['OK']} OK, {counts['NG']} NG, {counts['error']} unreadable",
    )


fan_out_register(
    Job.Kind.INSPECT_BATCH, FanOut(chunk_run=_batch_chunk_run, job_finish=_batch_finish)
)
