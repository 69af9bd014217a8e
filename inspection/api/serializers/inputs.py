"""What the API accepts: request bodies and query parameters, validated. No business logic."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from rest_framework import serializers

from inspection.errors import InvalidInput
from inspection.models import (
    InputCheckMode,
    KeepImages,
    Prompt,
    Role,
)
from prompting.inputcheck import MAX_MARGIN
from prompting.worksize import WORK_MAX_SIDE_LIMIT


class LoginInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class ClassInput(serializers.Serializer):
    name = serializers.CharField(max_length=50)
    colour = serializers.CharField(max_length=7, required=False)


class NumberField(serializers.FloatField):
    """A float that refuses JSON booleans (DRF would read ``true`` as 1.0)."""

    def to_internal_value(self, data: Any) -> float:
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
    work_max_side = serializers.IntegerField(
        min_value=0, max_value=WORK_MAX_SIDE_LIMIT, required=False
    )
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


#: the mask levels a client may fix for the backbone's clicks (0 and 1 cut nothing)
SEGMENT_LEVELS = (0.05, 0.95)


class SegmentInput(serializers.Serializer):
    prompts = serializers.ListField(child=serializers.JSONField(), min_length=1, max_length=200)
    label = serializers.CharField(max_length=100, required=False)
    output = serializers.ChoiceField(
        choices=["png", "rle", "both", "polygons"],
        default="both",
        required=False,
        help_text="the mask as a PNG, run lengths, both, or polygons (the outlines of its "
        "parts, ready to be saved as polygon prompts: training labels)",
    )
    level = serializers.FloatField(
        required=False,
        allow_null=True,
        default=None,
        min_value=SEGMENT_LEVELS[0],
        max_value=SEGMENT_LEVELS[1],
        help_text="backbone engine: where the mask is cut between the background (0) and "
        "the clicked cells (1), lower gives a larger mask; null (default): chosen by the "
        "image's edges; SAM ignores it",
    )


class RulesBacktestInput(serializers.Serializer):
    rules = serializers.JSONField(required=False)


#: how ``POST /inspect/`` may answer with the decision's pixels
INSPECT_MASKS = ("none", "coco_rle")


class InspectInput(_UploadInput):
    """Parts to inspect, with the station and part id they came from (cut to
    100 and 200 characters)."""

    file = serializers.ListField(child=serializers.FileField(), min_length=1)
    station = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    part_id = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    masks = serializers.ChoiceField(
        choices=INSPECT_MASKS,
        required=False,
        default="none",
        help_text="coco_rle: the answer also holds the decision's pixels, one COCO RLE per "
        "class (and the anomaly regions); one file at a time",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        files = self._validate_files(data)
        masks = data.get("masks") or "none"
        if masks not in INSPECT_MASKS:
            raise InvalidInput(
                "unknown masks encoding",
                field_errors={"masks": [f"one of {', '.join(INSPECT_MASKS)}, got {masks!r}"]},
            )
        if masks != "none" and len(files) > 1:
            raise InvalidInput(
                "masks for one file at a time",
                field_errors={
                    "masks": [
                        "masks are answered for one file at a time (a batch answers with a job)"
                    ]
                },
            )
        return {
            "station": str(data.get("station", ""))[:100],
            "part_id": str(data.get("part_id", ""))[:200],
            "files": [(f.name, upload_read(f, "file")) for f in files],
            "masks": masks,
        }


class WebhookInput(serializers.Serializer):
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(child=serializers.CharField(max_length=50), min_length=1)
    secret = serializers.CharField(max_length=128, required=False, allow_blank=True)


class TrainInput(serializers.Serializer):
    visible = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        max_length=500,
        help_text="ids of the images on the engineer's screen: their new predictions land first",
    )


class InspectionReviewInput(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=[("OK", "OK"), ("NG", "NG")])
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
