"""Reads. Every lookup is scoped to the requesting user's memberships, so an
object of a project the user isn't a member of is simply not found (404)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone

from inspection.models import (
    Image,
    Inspection,
    Job,
    JobChunk,
    Membership,
    ModelVersion,
    Prediction,
    Project,
    Prompt,
    RuleSet,
    Webhook,
)


def _member(user, prefix: str = "") -> Q:
    if not user or not user.is_authenticated:
        return Q(pk__in=[])
    return Q(**{f"{prefix}memberships__user": user})


def _get_scoped(qs: QuerySet, pk, *, user, project: str = ""):
    """``qs``'s row ``pk`` if ``user`` is a member of its project, else 404.

    The same query reads the user's role in that project (the membership join
    the scope needs anyway) and leaves it on the project object, so the
    permission check that follows (:func:`project_role`) costs no query.
    ``project``: the attribute path from the row to its project (``"image.project"``;
    empty when the rows are projects).
    """
    if not user or not user.is_authenticated:
        return _get(qs.none(), pk)
    prefix = "".join(f"{attr}__" for attr in filter(None, project.split(".")))
    scoped = qs.filter(**{f"{prefix}memberships__user": user}).annotate(
        member_role=F(f"{prefix}memberships__role")
    )
    row = _get(scoped, pk)
    owner = row
    for attr in filter(None, project.split(".")):
        owner = getattr(owner, attr)
    owner._member_role = (user.pk, row.member_role)
    return row


def _get(qs: QuerySet, pk):
    try:
        return qs.get(pk=pk)
    except (qs.model.DoesNotExist, ValueError, TypeError):
        raise Http404(f"no such {qs.model._meta.verbose_name}") from None
    except Exception as exc:  # malformed uuid on some backends
        if exc.__class__.__name__ == "ValidationError":
            raise Http404(f"no such {qs.model._meta.verbose_name}") from None
        raise


def project_list(*, user) -> QuerySet[Project]:
    return (
        Project.objects.filter(_member(user))
        .annotate(
            n_images=Count("images", distinct=True),
            n_inspections=Count("inspections", distinct=True),
            n_inspections_ng=Count(
                "inspections", filter=Q(inspections__verdict="NG"), distinct=True
            ),
        )
        .select_related("deployed_model", "active_ruleset")
        .order_by("-created_at")
    )


def project_get(*, user, pk) -> Project:
    return _get_scoped(
        Project.objects.select_related("deployed_model", "active_ruleset"), pk, user=user
    )


def project_role(*, user, project: Project) -> str | None:
    if not user or not user.is_authenticated:
        return None
    cached = getattr(project, "_member_role", None)
    if cached is not None and cached[0] == user.pk:
        return cached[1]  # read with the row, by a scoped selector
    return (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )


def membership_list(*, project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user").order_by("created_at")


def membership_get(*, project: Project, user_id) -> Membership:
    m = Membership.objects.filter(project=project, user_id=user_id).select_related("user").first()
    if m is None:
        raise Http404("no such member")
    return m


def image_get(*, user, pk) -> Image:
    return _get_scoped(
        Image.objects.select_related("project"),
        pk,
        user=user,
        project="project",
    )


def image_in_project(*, project: Project, pk) -> Image:
    """An image of ``project`` (already access-checked), or 404."""
    return _get(Image.objects.filter(project=project), pk)


def image_list(*, project: Project) -> QuerySet[Image]:
    active = Prompt.objects.filter(deleted_at__isnull=True)
    return (
        Image.objects.filter(project=project)
        .annotate(n_prompts=Count("prompts", filter=Q(prompts__in=active), distinct=True))
        .order_by("created_at", "id")
    )


def prompt_list(*, image: Image, include_deleted: bool = False) -> QuerySet[Prompt]:
    qs = Prompt.objects.filter(image=image)
    if not include_deleted:
        qs = qs.filter(deleted_at__isnull=True)
    return qs.order_by("created_at", "id")


def prompt_get(*, user, pk) -> Prompt:
    return _get_scoped(
        Prompt.objects.filter(deleted_at__isnull=True).select_related("image__project"),
        pk,
        user=user,
        project="image.project",
    )


def job_get(*, user, pk) -> Job:
    return _get_scoped(Job.objects.select_related("project"), pk, user=user, project="project")


def train_job_active(*, project: Project) -> Job | None:
    """The project's queued or running training job, if any."""
    return (
        Job.objects.filter(project=project, kind=Job.Kind.TRAIN, state__in=Job.ACTIVE_STATES)
        .only("id")
        .first()
    )


def job_list(*, project: Project) -> QuerySet[Job]:
    return Job.objects.filter(project=project).order_by("-created_at")


def jobs_stale_q(*, now: datetime | None = None, stale_s: int | None = None) -> Q:
    """Jobs whose worker is lost: running with no heartbeat for ``stale_s``
    (``JOB_STALE_AFTER``) and no chunk waiting in the queue for a free worker,
    or queued for longer than the hard time limit plus that plus a day (their
    message was lost)."""
    now = now or timezone.now()
    stale_s = stale_s if stale_s is not None else settings.JOB_STALE_AFTER
    queued_limit = settings.CELERY_TASK_TIME_LIMIT + stale_s + 24 * 3600
    # a fanned-out job whose chunks wait in the queue for a free worker is not lost
    waiting = JobChunk.objects.filter(
        state=JobChunk.State.QUEUED, created_at__gte=now - timedelta(seconds=queued_limit)
    ).values("job_id")
    running = Q(state=Job.State.RUNNING, heartbeat_at__lt=now - timedelta(seconds=stale_s)) & ~Q(
        id__in=waiting
    )
    queued = Q(state=Job.State.QUEUED, created_at__lt=now - timedelta(seconds=queued_limit))
    return running | queued


def job_stale_fields(*, state: str, stale_s: int, now: datetime) -> dict[str, Any]:
    """What a lost job of ``state`` becomes: failed, with why."""
    return {
        "state": Job.State.FAILED,
        "message": "worker lost",
        "error": (
            f"no heartbeat for more than {stale_s} s: the worker running this job stopped"
            if state == Job.State.RUNNING
            else "the job was never picked up by a worker"
        ),
        "finished_at": now,
    }


def job_is_lost(job: Job, *, now: datetime, stale_s: int) -> bool:
    """Whether ``job`` matches :func:`jobs_stale_q` (a query only for a running
    job whose heartbeat stopped: are its chunks waiting for a worker?)."""
    if job.state == Job.State.RUNNING:
        if job.heartbeat_at is None or job.heartbeat_at >= now - timedelta(seconds=stale_s):
            return False
        return Job.objects.filter(id=job.id).filter(jobs_stale_q(now=now, stale_s=stale_s)).exists()
    if job.state == Job.State.QUEUED:
        queued_limit = settings.CELERY_TASK_TIME_LIMIT + stale_s + 24 * 3600
        return job.created_at < now - timedelta(seconds=queued_limit)
    return False


def job_as_seen(job: Job, *, now: datetime | None = None) -> Job:
    """``job`` as a reader sees it: a lost job (see :func:`jobs_stale_q`) reads
    as failed at once, though only the sweep (every minute) writes that down.
    A lost job comes back as a changed copy; nothing is written."""
    now = now or timezone.now()
    stale_s = settings.JOB_STALE_AFTER
    if not job_is_lost(job, now=now, stale_s=stale_s):
        return job
    seen = copy.copy(job)
    for key, value in job_stale_fields(state=job.state, stale_s=stale_s, now=now).items():
        setattr(seen, key, value)
    return seen


def jobs_with_state(qs: QuerySet[Job], state: str) -> QuerySet[Job]:
    """``qs`` narrowed to jobs that read as ``state`` (lost ones read as failed)."""
    stale = jobs_stale_q()
    if state == Job.State.FAILED:
        return qs.filter(Q(state=state) | stale)
    return qs.filter(state=state).exclude(stale)


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).order_by("-number")


def model_candidate(*, project: Project) -> ModelVersion | None:
    """The newest version after the deployed one that nobody dismissed (None: none).

    With nothing deployed, the newest undismissed version is the candidate.
    """
    qs = ModelVersion.objects.filter(project=project, dismissed_at__isnull=True)
    if project.deployed_model_id is not None:
        deployed = (
            ModelVersion.objects.filter(id=project.deployed_model_id)
            .values_list("number", flat=True)
            .first()
        )
        if deployed is not None:
            qs = qs.filter(number__gt=deployed)
    return qs.order_by("-number").first()


def model_version_get(*, user, pk) -> ModelVersion:
    return _get_scoped(
        ModelVersion.objects.select_related("project"),
        pk,
        user=user,
        project="project",
    )


def ruleset_list(*, project: Project) -> QuerySet[RuleSet]:
    return RuleSet.objects.filter(project=project).order_by("-version")


def predictions_latest(*, project: Project, model_version_id=None) -> QuerySet[Prediction]:
    """The newest prediction of each image of ``project`` (of one model version if given)."""
    newest = Prediction.objects.filter(image=OuterRef("image"))
    if model_version_id is not None:
        newest = newest.filter(model_version_id=model_version_id)
    newest = newest.order_by("-created_at", "-id").values("id")[:1]
    return (
        Prediction.objects.filter(image__project=project, id=Subquery(newest))
        .select_related("image", "model_version", "ruleset")
        .order_by("image__created_at", "image_id")
    )


def prediction_latest_for_image(*, image: Image) -> Prediction | None:
    return Prediction.objects.filter(image=image).order_by("-created_at", "-id").first()


def prediction_get(*, user, pk) -> Prediction:
    return _get_scoped(
        Prediction.objects.select_related("image__project"),
        pk,
        user=user,
        project="image.project",
    )


def inspection_list(*, project: Project) -> QuerySet[Inspection]:
    return (
        Inspection.objects.filter(project=project)
        .select_related(
            "model_version",
            "ruleset",
            "review",
            "review__reviewed_by",
            "shadow_decision__model_version",
        )
        .order_by("-created_at", "-id")
    )


EXPORT_COLUMNS = [
    "id",
    "created_at",
    "verdict",
    "severity",
    "station",
    "part_id",
    "image_name",
    "image_sha256",
    "model_number",
    "rules_version",
    "latency_ms",
    "uncertainty",
    "input_ok",
    "input_issues",
    "shadow_model_number",
    "shadow_verdict",
    "n_blobs",
    "review_verdict",
    "review_note",
    "reasons",
]
EXPORT_MAX_ROWS = 100_000


def inspection_export_rows(qs: QuerySet[Inspection], *, flat: bool) -> list[dict[str, Any]]:
    """The first ``EXPORT_MAX_ROWS`` inspections of ``qs`` as export rows
    (``EXPORT_COLUMNS``). ``flat`` (CSV): lists become "; "-joined messages and
    an unknown ``input_ok`` an empty cell; else (JSON) they stay structured."""
    rows = []
    for ins in qs[:EXPORT_MAX_ROWS]:
        review, shadow = ins.review_or_none, ins.shadow_or_none
        issues = ins.input_check.get("issues", [])
        rows.append(
            {
                "id": str(ins.id),
                "created_at": ins.created_at.isoformat(),
                "verdict": ins.verdict,
                "severity": ins.severity,
                "station": ins.station,
                "part_id": ins.part_id,
                "image_name": ins.image_name,
                "image_sha256": ins.image_sha256,
                "model_number": ins.model_version.number,
                "rules_version": ins.ruleset.version,
                "latency_ms": ins.latency_ms,
                "uncertainty": ins.uncertainty,
                "input_ok": "" if ins.input_ok is None and flat else ins.input_ok,
                "input_issues": "; ".join(i.get("message", "") for i in issues) if flat else issues,
                "shadow_model_number": shadow.model_version.number if shadow else "",
                "shadow_verdict": shadow.verdict if shadow else "",
                "n_blobs": len(ins.blobs),
                "review_verdict": review.verdict if review else "",
                "review_note": review.note if review else "",
                "reasons": "; ".join(r.get("message", "") for r in ins.reasons)
                if flat
                else ins.reasons,
            }
        )
    return rows


def inspection_get(*, user, pk) -> Inspection:
    return _get_scoped(
        Inspection.objects.select_related(
            "model_version",
            "ruleset",
            "project",
            "review",
            "review__reviewed_by",
            "shadow_decision__model_version",
        ),
        pk,
        user=user,
        project="project",
    )


def inspection_in_project(*, project: Project, pk) -> Inspection:
    """An inspection of ``project`` (already access-checked), or 404."""
    return _get(Inspection.objects.filter(project=project), pk)


def webhook_list(*, project: Project) -> QuerySet[Webhook]:
    return Webhook.objects.filter(project=project).order_by("created_at")


def webhook_get(*, user, pk) -> Webhook:
    return _get_scoped(
        Webhook.objects.select_related("project"),
        pk,
        user=user,
        project="project",
    )


def job_predictions(*, job: Job, since=None) -> QuerySet[Prediction]:
    """Predictions a job has stored so far (a propagation's results as they land),
    oldest first; ``since``: only those stored after that moment."""
    qs = Prediction.objects.filter(job=job).select_related("image", "model_version", "ruleset")
    if since is not None:
        qs = qs.filter(created_at__gt=since)
    return qs.order_by("created_at", "id")
