"""Query-parameter filters of the list endpoints."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import F, QuerySet

from inspection import selectors
from inspection.models import Image, Inspection, Job, Prediction
from inspection.services import reviews as review_services
from inspection.services import shadow as shadow_services


class ImageFilter(django_filters.FilterSet):
    verdict = django_filters.ChoiceFilter(
        choices=[("OK", "OK"), ("NG", "NG"), ("none", "none")], method="f_verdict"
    )
    has_prompts = django_filters.BooleanFilter(method="f_has_prompts")
    has_ground_truth = django_filters.BooleanFilter(method="f_has_gt")

    class Meta:
        model = Image
        fields: list = []

    def f_verdict(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        return qs.filter(verdict="" if value == "none" else value)

    def f_has_prompts(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        return qs.filter(n_prompts__gt=0) if value else qs.filter(n_prompts=0)

    def f_has_gt(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        return qs.exclude(verdict="") if value else qs.filter(verdict="")


class JobFilter(django_filters.FilterSet):
    #: the state readers see: a job whose worker is lost is failed (selectors.job_as_seen)
    state = django_filters.ChoiceFilter(choices=Job.State.choices, method="f_state")

    class Meta:
        model = Job
        fields = ["kind", "state"]

    def f_state(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        return selectors.jobs_with_state(qs, value)


class PredictionFilter(django_filters.FilterSet):
    verdict = django_filters.ChoiceFilter(choices=[("OK", "OK"), ("NG", "NG")])
    image = django_filters.UUIDFilter(field_name="image_id")
    disagree = django_filters.BooleanFilter(method="f_disagree")
    uncertainty_min = django_filters.NumberFilter(field_name="uncertainty", lookup_expr="gte")
    ordering = django_filters.ChoiceFilter(
        choices=[(v, v) for v in ("image", "uncertainty", "-uncertainty")], method="f_ordering"
    )

    class Meta:
        model = Prediction
        fields = ["verdict", "image"]

    def f_ordering(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        """``-uncertainty``: the images a correction helps most first ("review next");
        predictions stored before uncertainty was measured come last either way."""

        if value == "image":
            return qs
        field = F("uncertainty")
        key = field.desc(nulls_last=True) if value.startswith("-") else field.asc(nulls_last=True)
        return qs.order_by(key, "image__created_at", "image_id")

    def f_disagree(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        labelled = qs.exclude(image__verdict="")
        return (
            labelled.exclude(verdict=F("image__verdict"))
            if value
            else labelled.filter(verdict=F("image__verdict"))
        )


class InspectionFilter(django_filters.FilterSet):
    verdict = django_filters.ChoiceFilter(choices=[("OK", "OK"), ("NG", "NG")])
    station = django_filters.CharFilter()
    part_id = django_filters.CharFilter()
    job = django_filters.UUIDFilter(field_name="job_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    #: decisions to double-check by hand: at least this fraction of uncertain pixels
    uncertainty_min = django_filters.NumberFilter(field_name="uncertainty", lookup_expr="gte")
    reviewed = django_filters.BooleanFilter(field_name="review", lookup_expr="isnull", exclude=True)
    review_verdict = django_filters.ChoiceFilter(
        field_name="review__verdict", choices=[("OK", "OK"), ("NG", "NG")]
    )
    misjudged = django_filters.BooleanFilter(method="f_misjudged")
    image_kept = django_filters.BooleanFilter(method="f_image_kept")
    #: false: images the input check flagged (unlike the training images); true: passed
    input_ok = django_filters.BooleanFilter(field_name="input_ok")
    #: true: the shadow model's verdict differs from the line's
    shadow_disagrees = django_filters.BooleanFilter(method="f_shadow_disagrees")
    ordering = django_filters.ChoiceFilter(
        choices=[(v, v) for v in ("-created_at", "created_at", "-uncertainty", "uncertainty")],
        method="f_ordering",
    )

    class Meta:
        model = Inspection
        fields = ["verdict", "station", "part_id", "job"]

    def f_misjudged(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        q = review_services.misjudged_q()
        return qs.filter(q) if value else qs.exclude(q)

    def f_shadow_disagrees(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        q = shadow_services.shadow_disagrees_q()
        return qs.filter(q) if value else qs.exclude(q)

    def f_image_kept(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        return qs.exclude(image_file="") if value else qs.filter(image_file="")

    def f_ordering(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        """Newest first by default; ``-uncertainty``: the decisions closest to
        flipping first (the review queue), unmeasured ones last, newest first on ties."""

        if value == "created_at":
            return qs.order_by("created_at", "id")
        if value == "-created_at":
            return qs.order_by("-created_at", "-id")
        field = F("uncertainty")
        key = field.desc(nulls_last=True) if value.startswith("-") else field.asc(nulls_last=True)
        return qs.order_by(key, "-created_at", "-id")
