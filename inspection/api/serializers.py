"""Input validation and output shapes. No business logic here."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inspection import selectors
from inspection.errors import InvalidInput
from inspection.models import (
    Image,
    InputCheckMode,
    Inspection,
    InspectionReview,
    Job,
    KeepImages,
    Membership,
    ModelVersion,
    Prediction,
    Project,
    Prompt,
    Role,
    RuleSet,
    Webhook,
    WebhookDelivery,
)
from inspection.services.chunks import job_chunks_summary
from prompting.inputcheck import MAX_MARGIN


def _url(request, name: str, pk) -> str:
    path = reverse(name, kwargs={"pk": pk})
    return request.build_absolute_uri(path) if request is not None else path


# --- inputs -------------------------------------------------------------------
class LoginInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class ClassInput(serializers.Serializer):
    name = serializers.CharField(max_length=50)
    colour = serializers.CharField(max_length=7, required=False)


class NumberField(serializers.FloatField):
    """A float that refuses JSON booleans (DRF would read ``true`` as 1.0)."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class ProjectInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    classes = serializers.ListField(child=serializers.JSONField(), max_length=20)
    cold_start_min = serializers.IntegerField(min_value=1, max_value=10_000, required=False)
    px_per_mm = serializers.FloatField(
        min_value=1e-6, max_value=1e6, required=False, allow_null=True
    )
    backend = serializers.CharField(max_length=50, required=False)
    keep_inspection_images = serializers.ChoiceField(choices=KeepImages.choices, required=False)
    alert_ng_rate = NumberField(min_value=0.001, max_value=1.0, required=False, allow_null=True)
    alert_window = serializers.IntegerField(min_value=5, max_value=10_000, required=False)
    input_check = serializers.ChoiceField(choices=InputCheckMode.choices, required=False)
    input_check_margin = NumberField(min_value=0.0, max_value=MAX_MARGIN, required=False)
    mqtt_publish = serializers.BooleanField(required=False)


class ProjectPatchInput(ProjectInput):
    name = serializers.CharField(max_length=200, required=False)
    classes = serializers.ListField(child=serializers.JSONField(), max_length=20, required=False)
    auto_deploy = serializers.BooleanField(required=False)


class MemberInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberPatchInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


def upload_read(upload: UploadedFile, field: str) -> bytes:
    """The bytes of an uploaded file; 400 on ``field`` past ``UPLOAD_MAX_BYTES``."""
    if upload.size is not None and upload.size > settings.UPLOAD_MAX_BYTES:
        msg = f"{field} is {upload.size} bytes; the limit is {settings.UPLOAD_MAX_BYTES}"
        raise InvalidInput(msg, field_errors={field: [msg]})
    return upload.read()


class _UploadInput(serializers.Serializer):
    """A multipart upload: one or more ``file`` fields, at most
    ``UPLOAD_MAX_FILES``, each read within ``UPLOAD_MAX_BYTES``. Invalid input
    raises InvalidInput naming the field (the one error shape of the API);
    ``validated_data["files"]`` holds (client filename, bytes) pairs."""

    def _files(self, data: Any, field: str) -> list[UploadedFile]:
        getlist = getattr(data, "getlist", None)
        values = getlist(field) if getlist else []
        return [v for v in values if isinstance(v, UploadedFile)]

    def _validate_files(self, data: Any) -> list[UploadedFile]:
        files = self._files(data, "file")
        if not files:
            raise InvalidInput(
                "no image", field_errors={"file": ["send one or more `file` fields"]}
            )
        if len(files) > settings.UPLOAD_MAX_FILES:
            raise InvalidInput(
                "too many files",
                field_errors={"file": [f"at most {settings.UPLOAD_MAX_FILES} files per request"]},
            )
        return files


class ImageUploadInput(_UploadInput):
    """Images with optional ground truth: one ``mask`` per ``file`` (same order)
    and a ``verdict`` for all of them (checked by the service)."""

    file = serializers.ListField(child=serializers.FileField(), min_length=1)
    mask = serializers.ListField(child=serializers.FileField(), required=False)
    verdict = serializers.ChoiceField(
        choices=[("OK", "OK"), ("NG", "NG"), ("", "")], required=False, allow_blank=True
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        files = self._validate_files(data)
        masks = self._files(data, "mask")
        if masks and len(masks) != len(files):
            raise InvalidInput(
                "masks don't match files",
                field_errors={"mask": ["send one `mask` per `file`, in the same order"]},
            )
        verdict = data.get("verdict") or None
        return {
            "files": [(f.name, upload_read(f, "file")) for f in files],
            "masks": [upload_read(m, "mask") for m in masks] or None,
            "verdict": verdict,
        }


class ImagePatchInput(serializers.Serializer):
    verdict = serializers.ChoiceField(
        choices=[("OK", "OK"), ("NG", "NG"), ("", "")], required=False, allow_blank=True
    )
    mask = serializers.FileField(required=False)
    clear_mask = serializers.BooleanField(required=False, default=False)


class PromptInput(serializers.Serializer):
    """Validated further by the engine (coordinates, class, sizes)."""

    kind = serializers.ChoiceField(choices=Prompt.Kind.choices)
    label = serializers.CharField(max_length=100)
    points = serializers.JSONField()
    radius = serializers.FloatField(required=False)
    positive = serializers.BooleanField(required=False)


class SegmentInput(serializers.Serializer):
    prompts = serializers.ListField(child=serializers.JSONField(), min_length=1, max_length=200)
    label = serializers.CharField(max_length=100, required=False)
    output = serializers.ChoiceField(choices=["png", "rle", "both"], default="both", required=False)


class RulesBacktestInput(serializers.Serializer):
    rules = serializers.JSONField(required=False)


class InspectInput(_UploadInput):
    """Parts to inspect, with the station and part id they came from (cut to
    100 and 200 characters)."""

    file = serializers.ListField(child=serializers.FileField(), min_length=1)
    station = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    part_id = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        files = self._validate_files(data)
        return {
            "station": str(data.get("station", ""))[:100],
            "part_id": str(data.get("part_id", ""))[:200],
            "files": [(f.name, upload_read(f, "file")) for f in files],
        }


class WebhookInput(serializers.Serializer):
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(child=serializers.CharField(max_length=50), min_length=1)
    secret = serializers.CharField(max_length=128, required=False, allow_blank=True)


# --- outputs ------------------------------------------------------------------
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

    def get_role(self, obj) -> str | None:
        return (self.context.get("roles") or {}).get(obj.id) or self.context.get("role")

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {"id": {"type": "string"}, "number": {"type": "integer"}},
        }
    )
    def get_candidate_model(self, obj) -> dict | None:
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

    def get_file_url(self, obj) -> str:
        return _url(self._r(), "image-file", obj.id)

    def get_display_url(self, obj) -> str:
        """What a browser should draw: the file, or a PNG of it where a browser
        would not show the engine's pixels (TIFF, 16-bit, alpha, EXIF rotation)."""
        return _url(self._r(), "image-display", obj.id)

    def get_thumbnail_url(self, obj) -> str:
        return _url(self._r(), "image-thumbnail", obj.id)

    def get_overlay_url(self, obj) -> str:
        return _url(self._r(), "image-overlay", obj.id)

    def get_mask_url(self, obj) -> str | None:
        return _url(self._r(), "image-mask", obj.id) if obj.mask else None

    def get_has_mask(self, obj) -> bool:
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


class TrainInput(serializers.Serializer):
    visible = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        max_length=500,
        help_text="ids of the images on the engineer's screen: their new predictions land first",
    )


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
    def get_chunks(self, obj) -> dict | None:
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

    def get_deployed(self, obj) -> bool:
        return obj.project.deployed_model_id == obj.id

    def get_shadow(self, obj) -> bool:
        """Whether this version judges the line's images in the shadow now."""
        return obj.project.shadow_model_id == obj.id


class RuleSetOutput(serializers.ModelSerializer):
    rules = serializers.JSONField(source="data")
    active = serializers.SerializerMethodField()

    class Meta:
        model = RuleSet
        fields = ["id", "project", "version", "rules", "note", "active", "created_at"]

    def get_active(self, obj) -> bool:
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

    def get_mask_url(self, obj) -> str:
        return _url(self.context.get("request"), "prediction-mask", obj.id)

    def get_anomaly_url(self, obj) -> str | None:
        """The anomaly heat map (PNG, RGBA), when the model has a memory bank of good parts."""
        if obj.anomaly_peak is None:
            return None
        return _url(self.context.get("request"), "prediction-anomaly", obj.id)

    def get_overlay_url(self, obj) -> str:
        return _url(self.context.get("request"), "prediction-overlay", obj.id)


class InspectionReviewInput(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=[("OK", "OK"), ("NG", "NG")])
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


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

    def get_shadow(self, obj) -> dict:
        """The shadow model's decision ({} when no shadow ran, or not yet)."""
        decision = obj.shadow_or_none
        return decision.to_dict() if decision else {}

    def get_image_kept(self, obj) -> bool:
        return bool(obj.image_file)

    @extend_schema_field(InspectionReviewOutput(allow_null=True))
    def get_review(self, obj):
        review = obj.review_or_none
        return InspectionReviewOutput(review).data if review else None

    def get_misjudged(self, obj) -> bool | None:
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
            "image_kept",
            "review",
            "misjudged",
            "job",
            "created_at",
        ]


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
