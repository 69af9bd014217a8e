"""What the API answers: the shapes of rows and results. No business logic."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from inspection import selectors
from inspection.models import (
    Image,
    Inspection,
    InspectionReview,
    Job,
    Membership,
    ModelVersion,
    Prediction,
    Project,
    Prompt,
    RuleSet,
    Webhook,
    WebhookDelivery,
)
from inspection.services.chunks import job_chunks_summary


def _url(request, name: str, pk) -> str:
    path = reverse(name, kwargs={"pk": pk})
    return request.build_absolute_uri(path) if request is not None else path


class TokenOutput(serializers.Serializer):
    token = serializers.CharField()


class ProjectOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    deployed_model_number = serializers.IntegerField(
        source="deployed_model.number", default=None, allow_null=True, read_only=True
    )
    active_rules_version = serializers.IntegerField(
        source="active_ruleset.version", default=None, allow_null=True, read_only=True
    )
    candidate_model = serializers.SerializerMethodField()
    n_images = serializers.IntegerField(read_only=True, default=None, allow_null=True)
    n_inspections = serializers.IntegerField(read_only=True, default=None, allow_null=True)
    n_inspections_ng = serializers.IntegerField(read_only=True, default=None, allow_null=True)

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "description",
            "classes",
            "cold_start_min",
            "px_per_mm",
            "backend",
            "work_max_side",
            "keep_inspection_images",
            "alert_ng_rate",
            "alert_window",
            "alert_active",
            "alert_changed_at",
            "input_check",
            "input_check_margin",
            "mqtt_publish",
            "shadow_model",
            "deployed_model",
            "deployed_model_number",
            "deployed_at",
            "deployed_how",
            "auto_deploy",
            "candidate_model",
            "active_ruleset",
            "active_rules_version",
            "role",
            "n_images",
            "n_inspections",
            "n_inspections_ng",
            "created_at",
            "updated_at",
        ]

    def get_role(self, obj: Project) -> str | None:
        return (self.context.get("roles") or {}).get(obj.id) or self.context.get("role")

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {"id": {"type": "string"}, "number": {"type": "integer"}},
        }
    )
    def get_candidate_model(self, obj: Project) -> dict | None:
        """The newest version after the deployed one that nobody dismissed."""
        if "roles" in self.context:
            return None  # the list stays one query; the detail names it
        mv = selectors.model_candidate(project=obj)
        return None if mv is None else {"id": str(mv.id), "number": mv.number}


class MemberOutput(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="user.id")
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["user_id", "username", "role", "created_at"]


class ImageOutput(serializers.ModelSerializer):
    file_url = serializers.SerializerMethodField()
    display_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    overlay_url = serializers.SerializerMethodField()
    mask_url = serializers.SerializerMethodField()
    has_mask = serializers.SerializerMethodField()
    n_prompts = serializers.IntegerField(read_only=True, default=None, allow_null=True)

    class Meta:
        model = Image
        fields = [
            "id",
            "project",
            "original_name",
            "sha256",
            "width",
            "height",
            "mode",
            "format",
            "bit_depth",
            "size_bytes",
            "verdict",
            "has_mask",
            "n_prompts",
            "file_url",
            "display_url",
            "thumbnail_url",
            "overlay_url",
            "mask_url",
            "created_at",
        ]

    def _r(self):
        return self.context.get("request")

    def get_file_url(self, obj: Image) -> str:
        return _url(self._r(), "image-file", obj.id)

    def get_display_url(self, obj: Image) -> str:
        """What a browser should draw: the file, or a PNG of it where a browser
        would not show the engine's pixels (TIFF, 16-bit, alpha, EXIF rotation)."""
        return _url(self._r(), "image-display", obj.id)

    def get_thumbnail_url(self, obj: Image) -> str:
        return _url(self._r(), "image-thumbnail", obj.id)

    def get_overlay_url(self, obj: Image) -> str:
        return _url(self._r(), "image-overlay", obj.id)

    def get_mask_url(self, obj: Image) -> str | None:
        return _url(self._r(), "image-mask", obj.id) if obj.mask else None

    def get_has_mask(self, obj: Image) -> bool:
        return bool(obj.mask)


class PromptOutput(serializers.ModelSerializer):
    points = serializers.JSONField(source="data.points")
    radius = serializers.FloatField(source="data.radius", default=None, allow_null=True)
    positive = serializers.BooleanField(source="data.positive", default=None, allow_null=True)
    author = serializers.CharField(source="author.username", default=None, allow_null=True)

    class Meta:
        model = Prompt
        fields = [
            "id",
            "image",
            "kind",
            "label",
            "points",
            "radius",
            "positive",
            "author",
            "created_at",
            "deleted_at",
        ]


class JobChunksOutput(serializers.Serializer):
    total = serializers.IntegerField(help_text="chunks the job was split into")
    n_items = serializers.IntegerField(help_text="images (or uploads) over all chunks")
    done_items = serializers.IntegerField(help_text="of them finished so far")
    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class JobOutput(serializers.ModelSerializer):
    """A job as readers see it: one whose worker is lost reads as failed at
    once (``selectors.job_as_seen``); the sweep writes that down within a minute,
    so a GET never writes."""

    chunks = serializers.SerializerMethodField(
        help_text="a job fanned out over the workers (propagation, batch inspection): "
        "its chunks by state and the items done; null otherwise"
    )

    def to_representation(self, instance: Job) -> dict[str, Any]:
        return super().to_representation(selectors.job_as_seen(instance))

    class Meta:
        model = Job
        fields = [
            "id",
            "project",
            "image",
            "kind",
            "state",
            "progress",
            "message",
            "error",
            "timings",
            "result",
            "chunks",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]

    @extend_schema_field(JobChunksOutput(allow_null=True))
    def get_chunks(self, obj: Job) -> dict | None:
        return job_chunks_summary(obj)


class ModelVersionOutput(serializers.ModelSerializer):
    deployed = serializers.SerializerMethodField()
    shadow = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "project",
            "number",
            "backend",
            "backend_fingerprint",
            "classes",
            "config",
            "artifact_sha256",
            "prompt_ids",
            "images",
            "metrics",
            "pixels_per_class",
            "timings",
            "job",
            "deployed",
            "shadow",
            "dismissed_at",
            "created_at",
        ]

    def get_deployed(self, obj: ModelVersion) -> bool:
        return obj.project.deployed_model_id == obj.id

    def get_shadow(self, obj: ModelVersion) -> bool:
        """Whether this version judges the line's images in the shadow now."""
        return obj.project.shadow_model_id == obj.id


class RuleSetOutput(serializers.ModelSerializer):
    rules = serializers.JSONField(source="data")
    active = serializers.SerializerMethodField()

    class Meta:
        model = RuleSet
        fields = ["id", "project", "version", "rules", "note", "active", "created_at"]

    def get_active(self, obj: RuleSet) -> bool:
        return obj.project.active_ruleset_id == obj.id


class PredictionOutput(serializers.ModelSerializer):
    model_number = serializers.IntegerField(source="model_version.number")
    rules_version = serializers.IntegerField(source="ruleset.version")
    truth = serializers.CharField(source="image.verdict")
    mask_url = serializers.SerializerMethodField()
    overlay_url = serializers.SerializerMethodField()
    anomaly_url = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = [
            "id",
            "image",
            "model_version",
            "model_number",
            "ruleset",
            "rules_version",
            "verdict",
            "severity",
            "reasons",
            "blobs",
            "uncertainty",
            "anomaly_peak",
            "truth",
            "mask_url",
            "overlay_url",
            "anomaly_url",
            "timings",
            "created_at",
        ]

    def get_mask_url(self, obj: Prediction) -> str:
        return _url(self.context.get("request"), "prediction-mask", obj.id)

    def get_anomaly_url(self, obj: Prediction) -> str | None:
        """The anomaly heat map (PNG, RGBA), when the model has a memory bank of good parts."""
        if obj.anomaly_peak is None:
            return None
        return _url(self.context.get("request"), "prediction-anomaly", obj.id)

    def get_overlay_url(self, obj: Prediction) -> str:
        return _url(self.context.get("request"), "prediction-overlay", obj.id)


class InspectionReviewOutput(serializers.ModelSerializer):
    reviewed_by = serializers.CharField(source="reviewed_by.username", default=None)

    class Meta:
        model = InspectionReview
        fields = ["verdict", "note", "image", "reviewed_by", "created_at", "updated_at"]


class InspectionOutput(serializers.ModelSerializer):
    model_number = serializers.IntegerField(source="model_version.number")
    rules_version = serializers.IntegerField(source="ruleset.version")
    image_kept = serializers.SerializerMethodField()
    review = serializers.SerializerMethodField()
    misjudged = serializers.SerializerMethodField()
    shadow = serializers.SerializerMethodField()

    def get_shadow(self, obj: Inspection) -> dict:
        """The shadow model's decision ({} when no shadow ran, or not yet)."""
        decision = obj.shadow_or_none
        return decision.to_dict() if decision else {}

    def get_image_kept(self, obj: Inspection) -> bool:
        return bool(obj.image_file)

    @extend_schema_field(InspectionReviewOutput(allow_null=True))
    def get_review(self, obj: Inspection) -> dict | None:
        review = obj.review_or_none
        return InspectionReviewOutput(review).data if review else None

    def get_misjudged(self, obj: Inspection) -> bool | None:
        """Whether a person found the line's verdict wrong (None: not reviewed)."""
        review = obj.review_or_none
        return None if review is None else review.misjudged

    class Meta:
        model = Inspection
        fields = [
            "id",
            "project",
            "verdict",
            "severity",
            "reasons",
            "blobs",
            "uncertainty",
            "input_ok",
            "input_check",
            "shadow",
            "model_version",
            "model_number",
            "ruleset",
            "rules_version",
            "latency_ms",
            "timings",
            "station",
            "part_id",
            "image_sha256",
            "image_name",
            "width",
            "height",
            "px_per_mm",
            "image_kept",
            "review",
            "misjudged",
            "job",
            "created_at",
        ]


class InspectionMaskOutput(serializers.Serializer):
    """One class's pixels of a decision: ``class``, ``area_px`` and ``rle``, a
    compressed COCO RLE."""

    area_px = serializers.IntegerField()
    rle = inline_serializer(
        "CocoRle",
        {
            "size": serializers.ListField(child=serializers.IntegerField()),
            "counts": serializers.CharField(),
        },
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        # "class" is a Python keyword, so it cannot be declared as an attribute
        return {"class": serializers.CharField(), **super().get_fields()}


class InspectionMasksOutput(serializers.Serializer):
    size = serializers.ListField(child=serializers.IntegerField(), help_text="[H, W]")
    encoding = serializers.CharField(help_text="coco_rle: column-major, compressed")
    masks = InspectionMaskOutput(many=True)


class ReplayMaskOutput(serializers.Serializer):
    """One class's pixels of a replayed decision: ``rle`` is a COCO RLE object
    (``coco_rle``) or a list of row-major run lengths starting with 0s (``rle``)."""

    area_px = serializers.IntegerField()
    rle = serializers.JSONField()

    def get_fields(self) -> dict[str, serializers.Field]:
        return {"class": serializers.CharField(), **super().get_fields()}


class InspectionReplayOutput(serializers.Serializer):
    """A logged inspection's decision pixels, recomputed from its kept image."""

    size = serializers.ListField(child=serializers.IntegerField(), help_text="[H, W]")
    encoding = serializers.ChoiceField(choices=["coco_rle", "rle"])
    masks = ReplayMaskOutput(many=True)
    verdict = serializers.CharField()
    blobs = serializers.IntegerField(help_text="how many blobs the replay found")
    matches_logged = serializers.BooleanField(
        help_text="the replay's verdict and blob count equal the log's"
    )


class InspectAnswerOutput(InspectionOutput):
    """The logged decision, with its pixels when the request asked for them
    (``masks``; null otherwise)."""

    masks = serializers.SerializerMethodField()

    @extend_schema_field(InspectionMasksOutput(allow_null=True))
    def get_masks(self, obj: Inspection) -> dict | None:
        return self.context.get("masks")

    class Meta(InspectionOutput.Meta):
        fields = [*InspectionOutput.Meta.fields, "masks"]


class WebhookOutput(serializers.ModelSerializer):
    class Meta:
        model = Webhook
        fields = ["id", "project", "url", "events", "active", "created_at"]


class WebhookCreatedOutput(WebhookOutput):
    """The secret is shown once, at creation."""

    class Meta(WebhookOutput.Meta):
        fields = [*WebhookOutput.Meta.fields, "secret"]


class WebhookDeliveryOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "status",
            "attempts",
            "response_code",
            "last_error",
            "payload",
            "created_at",
            "delivered_at",
        ]
