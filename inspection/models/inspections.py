"""Production inspections (immutable), their shadow decisions and reviews."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import models

from inspection.models.choices import Verdict
from inspection.models.images import Image
from inspection.models.jobs import Job
from inspection.models.projects import Project
from inspection.models.versions import ModelVersion, RuleSet


class ImmutableError(Exception):
    """An inspection log row was about to be changed or deleted."""


class Inspection(models.Model):
    """The production log. Written once; never updated, never deleted alone.

    The one exception is retention: a kept image (``image_file``) expires after
    ``INSPECTION_IMAGES_KEEP_DAYS``, and its name is then cleared; the decision stays.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="inspections")
    image_sha256 = models.CharField(max_length=64)
    image_name = models.CharField(max_length=255, blank=True, default="")
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="inspections"
    )
    ruleset = models.ForeignKey(RuleSet, on_delete=models.PROTECT, related_name="inspections")
    verdict = models.CharField(max_length=2, choices=Verdict.choices)
    severity = models.CharField(max_length=10, blank=True, default="")
    reasons = models.JSONField(default=list)
    blobs = models.JSONField(default=list)
    #: as Prediction.uncertainty; null for inspections logged before it was measured
    uncertainty = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField()
    timings = models.JSONField(default=dict, blank=True)
    station = models.CharField(max_length=100, blank=True, default="")
    part_id = models.CharField(max_length=200, blank=True, default="")
    #: the inspected file as sent, when the project keeps it (Project.keep_inspection_images)
    image_file = models.FileField(max_length=300, blank=True, default="")
    #: the input check (prompting.inputcheck.InputCheck.to_dict() plus the mode);
    #: input_ok is null when the image was not checked (mode off, or an older model)
    input_check = models.JSONField(default=dict, blank=True)
    input_ok = models.BooleanField(null=True, blank=True)
    #: the project's scale when the image was judged (mm² rules read it); null
    #: before it was recorded
    px_per_mm = models.FloatField(null=True, blank=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["project", "verdict", "created_at"]),
            # the log and the line alert read a project's newest inspections first
            models.Index(fields=["project", "-created_at"], name="inspection_project_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.verdict} {self.part_id or self.image_sha256[:12]}"

    def _reverse_one(self, name: str):
        try:
            return getattr(self, name)
        except ObjectDoesNotExist:
            return None

    @property
    def shadow_or_none(self) -> ShadowDecision | None:
        """The shadow model's decision on this inspection, None when none (yet)."""
        return self._reverse_one("shadow_decision")

    @property
    def review_or_none(self) -> InspectionReview | None:
        """The person's review of this decision, None when there is none yet."""
        return self._reverse_one("review")

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ImmutableError("inspections are immutable: they can't be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableError("inspections are immutable: they can't be deleted one by one")


class ShadowDecision(models.Model):
    """A shadow model's decision on a logged inspection's image, with the rules the
    line used. Written once by a task after the line got its answer (the line's
    latency does not include it); ``verdict`` is empty and ``error`` set when the
    shadow model failed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    inspection = models.OneToOneField(
        Inspection, on_delete=models.CASCADE, related_name="shadow_decision"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="shadow_decisions"
    )
    verdict = models.CharField(max_length=2, blank=True, default="")
    severity = models.CharField(max_length=10, blank=True, default="")
    reasons = models.JSONField(default=list)
    n_blobs = models.PositiveIntegerField(default=0)
    engine_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def to_dict(self) -> dict:
        out = {
            "model_version": str(self.model_version_id),
            "model_number": self.model_version.number,
            "verdict": self.verdict,
            "severity": self.severity,
            "reasons": self.reasons,
            "n_blobs": self.n_blobs,
            "engine_ms": self.engine_ms,
        }
        return {**out, "error": self.error} if self.error else out


class InspectionReview(models.Model):
    """A person's verdict on a logged inspection (the part as it really is).

    The inspection itself stays immutable; its review can be set again or
    cleared. ``image``: the project image the inspected file became when it
    was added to the training images.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    inspection = models.OneToOneField(Inspection, on_delete=models.CASCADE, related_name="review")
    verdict = models.CharField(max_length=2, choices=Verdict.choices)
    note = models.CharField(max_length=500, blank=True, default="")
    image = models.ForeignKey(
        Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.verdict} (was {self.inspection.verdict})"

    @property
    def misjudged(self) -> bool:
        return self.verdict != self.inspection.verdict
