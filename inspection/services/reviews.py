"""Reviews of production decisions, and turning inspected parts into training images.

An operator who checks a part records its real verdict on the inspection
(``inspection_review_set``); the log entry itself never changes. Reviews give
the line's own escape and overkill counts (``inspection_review_summary``), and
an engineer can add a reviewed part's kept image to the project's images
(``inspection_promote``) with the review's verdict as its ground truth, to paint
corrections on it and to backtest rules on parts the model never trained on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from inspection.errors import Conflict, InvalidInput
from inspection.models import Image, Inspection, InspectionReview, Job, Project, Verdict
from inspection.services import predictions, webhooks
from inspection.services.images import image_upload
from inspection.services.inspections import inspection_window_ng_rate
from inspection.services.shadow import model_shadow_compare
from inspection.storage import bytes_read, file_delete
from inspection.types import Actor
from prompting.rates import error_rates

log = logging.getLogger("inspection.reviews")


def _verdict_clean(verdict) -> str:
    if verdict not in (Verdict.OK, Verdict.NG):
        raise InvalidInput(
            "verdict must be OK or NG", field_errors={"verdict": ["must be OK or NG"]}
        )
    return str(verdict)


def inspection_review_set(
    *, inspection: Inspection, verdict: str, note: str = "", user: Actor = None
) -> InspectionReview:
    """Record (or replace) a person's verdict on ``inspection``; emits
    ``inspection.reviewed`` with whether the line's decision was wrong."""
    verdict = _verdict_clean(verdict)
    if len(note or "") > 500:
        raise InvalidInput("note is too long", field_errors={"note": ["at most 500 characters"]})
    with transaction.atomic():
        review, _ = InspectionReview.objects.select_for_update().get_or_create(
            inspection=inspection, defaults={"verdict": verdict}
        )
        review.verdict = verdict
        review.note = note or ""
        review.reviewed_by = user if user and user.is_authenticated else None
        review.save()
    webhooks.webhook_event_emit(
        project=inspection.project,
        event="inspection.reviewed",
        payload={
            "inspection": str(inspection.id),
            "verdict": inspection.verdict,
            "review_verdict": review.verdict,
            "misjudged": review.misjudged,
            "station": inspection.station,
            "part_id": inspection.part_id,
            "image_sha256": inspection.image_sha256,
        },
    )
    return review


def inspection_review_clear(*, inspection: Inspection) -> None:
    """Remove the review of ``inspection`` (a mistaken click); 409 when there is none."""
    deleted, _ = InspectionReview.objects.filter(inspection=inspection).delete()
    if not deleted:
        raise Conflict("this inspection has no review", code="not_reviewed")


@dataclass
class PromoteResult:
    image: Image
    created: bool
    #: the predict job that gives the new image the deployed model's prediction
    job: Job | None = None


def inspection_promote(*, inspection: Inspection, user: Actor = None) -> PromoteResult:
    """Add the kept image of ``inspection`` to its project's images.

    The review's verdict (when there is one) becomes the image's ground truth;
    an image with the same content already in the project is returned as it is
    (``created=False``). A new image is predicted by the deployed model (a
    predict job; stored predictions of the other images are reused), so the
    rules backtest counts it at once, as a part the model was not trained on.
    409 when the inspection kept no image.
    """
    if not inspection.image_file:
        raise Conflict(
            "this inspection kept no image: set the project's keep_inspection_images "
            "to ng, unsure or all to keep the images of new inspections",
            code="image_not_kept",
        )
    review = InspectionReview.objects.filter(inspection=inspection).first()
    try:
        data = bytes_read(inspection.image_file.name)
    except (OSError, FileNotFoundError):
        raise Conflict(
            "the kept image of this inspection is no longer in storage", code="image_missing"
        ) from None
    result = image_upload(
        project=inspection.project,
        data=data,
        filename=inspection.image_name or f"inspection-{inspection.id.hex[:12]}",
        verdict=review.verdict if review else None,
        user=user,
    )
    if review is not None and review.image_id != result.image.id:
        InspectionReview.objects.filter(id=review.id).update(image=result.image)
    job = None
    if not result.duplicate:
        job = predictions.predictions_refresh_start(
            project=inspection.project, user=user, reason="a part added from the line"
        )
    return PromoteResult(image=result.image, created=not result.duplicate, job=job)


def inspection_review_summary(*, project: Project) -> dict:
    """Counts of reviewed inspections: how often the line's decision was wrong.

    ``escapes``: judged OK, really NG; ``overkills``: judged NG, really OK. The
    rates are over the reviewed inspections of each real verdict (None without any).
    """
    counts = InspectionReview.objects.filter(inspection__project=project).aggregate(
        reviewed=Count("id"),
        really_ng=Count("id", filter=Q(verdict="NG")),
        really_ok=Count("id", filter=Q(verdict="OK")),
        escapes=Count("id", filter=Q(verdict="NG", inspection__verdict="OK")),
        overkills=Count("id", filter=Q(verdict="OK", inspection__verdict="NG")),
        promoted=Count("id", filter=Q(image__isnull=False)),
    )
    return {
        **counts,
        "misjudged": counts["escapes"] + counts["overkills"],
        **error_rates(
            escapes=counts["escapes"],
            n_ng=counts["really_ng"],
            overkills=counts["overkills"],
            n_ok=counts["really_ok"],
        ),
    }


def inspection_summary(*, project: Project) -> dict:
    """The log's counts (decisions, NG, kept images) and its reviews' summary."""
    counts = Inspection.objects.filter(project=project).aggregate(
        n_inspections=Count("id"),
        n_ng=Count("id", filter=Q(verdict="NG")),
        n_images_kept=Count("id", filter=~Q(image_file="")),
        n_input_flagged=Count("id", filter=Q(input_ok=False)),
    )
    n = counts["n_inspections"]
    window = max(1, project.alert_window)
    return {
        **counts,
        "ng_rate": counts["n_ng"] / n if n else None,
        "keep_inspection_images": project.keep_inspection_images,
        "input_check": project.input_check,
        "shadow": model_shadow_compare(model_version=project.shadow_model)
        if project.shadow_model_id
        else None,
        "alert": {
            "ng_rate_level": project.alert_ng_rate,
            "window": window,
            "window_ng_rate": inspection_window_ng_rate(project=project, window=window),
            "active": project.alert_active,
            "changed_at": project.alert_changed_at,
        },
        "reviews": inspection_review_summary(project=project),
    }


def inspection_images_expire(
    *, older_than_days: int | None = None, now: datetime | None = None
) -> int:
    """Delete the kept images of inspections older than ``older_than_days``
    (default ``INSPECTION_IMAGES_KEEP_DAYS``; 0 keeps them forever).

    The decision, its reasons and its review stay in the log; only the stored
    file goes, and ``image_file`` is emptied so the log no longer offers it.
    Images already added to the training images are copies and stay. Returns
    how many files were deleted. Safe to run twice.
    """
    days = settings.INSPECTION_IMAGES_KEEP_DAYS if older_than_days is None else older_than_days
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    expired = Inspection.objects.filter(created_at__lt=cutoff).exclude(image_file="")
    n = 0
    for ins_id, name in expired.values_list("id", "image_file").iterator():
        file_delete(name)
        # retention, not an edit of the decision: only the attachment's name is cleared
        Inspection.objects.filter(id=ins_id).update(image_file="")
        n += 1
    if n:
        log.info("expired %d kept inspection images older than %d days", n, days)
    return n


def misjudged_q() -> Q:
    """Inspections whose review disagrees with the line's verdict."""
    return Q(review__isnull=False) & ~Q(review__verdict=F("verdict"))
