"""Reads. Every lookup is scoped to the requesting user's memberships, so an
object of a project the user isn't a member of is simply not found (404)."""

from __future__ import annotations

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.http import Http404

from inspection.models import (
    Image,
    Inspection,
    Job,
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


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).order_by("-number")


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
