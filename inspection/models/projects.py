"""Projects and who may do what in them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from inspection.models.choices import InputCheckMode, KeepImages, Role
from prompting.inputcheck import DEFAULT_MARGIN
from prompting.worksize import WORK_MAX_SIDE


def backend_default() -> str:
    """A new project's feature backend: ``DEFAULT_FEATURE_BACKEND``, however it is created."""
    return settings.DEFAULT_FEATURE_BACKEND


def cold_start_min_default() -> int:
    """A new project's cold-start minimum: ``COLD_START_MIN_IMAGES``."""
    return settings.COLD_START_MIN_IMAGES


class Project(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    #: [{"name": "scratch", "colour": "#ff0000"}, ...]
    classes = models.JSONField(default=list)
    cold_start_min = models.PositiveIntegerField(default=cold_start_min_default)
    px_per_mm = models.FloatField(null=True, blank=True)
    backend = models.CharField(max_length=50, default=backend_default)
    #: the working resolution of the next Run's model: images whose longer side is
    #: longer are learnt from and predicted at this size (prompting.worksize); 0:
    #: every image whole (projects from before the bound keep that)
    work_max_side = models.PositiveIntegerField(default=WORK_MAX_SIDE)
    #: which images the production inspections keep (KeepImages)
    keep_inspection_images = models.CharField(
        max_length=10, choices=KeepImages.choices, default=KeepImages.NONE
    )
    #: line alert: raised when the NG share of the last ``alert_window`` inspections
    #: reaches this (0..1; null: no alert), cleared when it falls below again
    alert_ng_rate = models.FloatField(null=True, blank=True)
    alert_window = models.PositiveIntegerField(default=50)
    #: whether the line alert is raised now, and since when (or when it was cleared)
    alert_active = models.BooleanField(default=False)
    alert_changed_at = models.DateTimeField(null=True, blank=True)
    #: publish every decision and line alert to the MQTT broker (MQTT_URL; off when unset)
    mqtt_publish = models.BooleanField(default=False)
    #: the input check on inspections (InputCheckMode) and its tolerance: how far
    #: beyond the training images' span (in spreads) a measure may lie
    input_check = models.CharField(
        max_length=4, choices=InputCheckMode.choices, default=InputCheckMode.FLAG
    )
    input_check_margin = models.FloatField(default=DEFAULT_MARGIN)
    deployed_model = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    #: when the deployed model was deployed, and how (DeployedHow)
    deployed_at = models.DateTimeField(null=True, blank=True)
    deployed_how = models.CharField(max_length=10, blank=True, default="")
    #: cold-start convenience: every Run's model is deployed at once, until the
    #: project's first line inspection arrives (then a Run makes a candidate again)
    auto_deploy = models.BooleanField(default=False)
    #: a candidate model that judges every inspection beside the deployed one,
    #: without deciding anything (Inspection.shadow), until it is deployed or stopped
    shadow_model = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    active_ruleset = models.ForeignKey(
        "RuleSet", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.classes]


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.project}"
