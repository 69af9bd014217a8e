"""What a Run makes and what judges an image: model versions, rule sets, predictions."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from inspection.models.choices import Verdict
from inspection.models.images import Image
from inspection.models.jobs import Job
from inspection.models.projects import Project


class ModelVersion(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    backend = models.CharField(max_length=50)
    backend_fingerprint = models.CharField(max_length=200, blank=True, default="")
    classes = models.JSONField(default=list)
    config = models.JSONField(default=dict, blank=True)
    #: projects/<project>/models/<uuid>.npz, written atomically
    artifact = models.FileField(max_length=300)
    artifact_sha256 = models.CharField(max_length=64, blank=True, default="")
    #: exact training inputs: prompt ids, and [{"id", "sha256"}] of images
    prompt_ids = models.JSONField(default=list)
    images = models.JSONField(default=list)
    #: {"iou", "escape_rate", "overkill_rate", "n_ground_truth", "loo_iou", ...}
    metrics = models.JSONField(default=dict, blank=True)
    pixels_per_class = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    #: set when an engineer kept an earlier version instead (or undid the strokes
    #: that made this one): a dismissed version is never the candidate
    dismissed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="modelversion_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.project} v{self.number}"


class RuleSet(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rulesets")
    version = models.PositiveIntegerField()
    #: engine rule-set JSON, validated by prompting.rules.ruleset_validate
    data = models.JSONField()
    note = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="ruleset_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.project} rules v{self.version}"


class Prediction(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="predictions"
    )
    ruleset = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="predictions")
    verdict = models.CharField(max_length=2, choices=Verdict.choices)
    severity = models.CharField(max_length=10, blank=True, default="")
    reasons = models.JSONField(default=list)
    blobs = models.JSONField(default=list)
    mask = models.FileField(max_length=300)
    overlay = models.FileField(max_length=300)
    #: probabilities, .npz (``prompting.probmaps``: uint8 defect planes); lets backtests re-run rules cheaply
    probabilities = models.FileField(max_length=300)
    #: fraction of inspected pixels near their class threshold (rules' Decision.uncertainty);
    #: null for predictions stored before it was measured
    uncertainty = models.FloatField(null=True, blank=True)
    #: highest anomaly score of the image (1.0 = good parts' level); null when the
    #: model has no memory bank of good parts (the map itself is in ``probabilities``)
    anomaly_peak = models.FloatField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version", "ruleset"], name="prediction_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.image_id} {self.verdict}"
