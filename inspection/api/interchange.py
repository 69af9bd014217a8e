"""Interchange endpoints: export ground truth and predictions as COCO, Label
Studio tasks or PNG masks; import COCO or Label Studio annotations as ground
truth (``inspection.services.interchange``)."""

from __future__ import annotations

import json
from uuid import UUID

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection.api.base import project_for
from inspection.api.permissions import EDIT, READ
from inspection.errors import InvalidInput
from inspection.services import interchange as interchange_services

ImportOutput = inline_serializer(
    "InterchangeImportResult",
    {
        "images": drf_serializers.IntegerField(),
        "matched": drf_serializers.IntegerField(),
        "ng": drf_serializers.IntegerField(),
        "unmatched": drf_serializers.ListField(child=drf_serializers.CharField()),
    },
)
#: Label Studio's task list (raw OpenAPI: a JSON array of task objects)
TASKS_SCHEMA = {"type": "array", "items": {"type": "object", "additionalProperties": {}}}
ImportInput = inline_serializer(
    "InterchangeImportFile", {"file": drf_serializers.FileField(help_text="the JSON file")}
)


def _json_body(request: Request):
    """The document: a multipart ``file`` (up to UPLOAD_MAX_BYTES) or the JSON body."""
    upload = request.FILES.get("file") if hasattr(request, "FILES") else None
    if upload is None:
        if request.content_type and request.content_type.startswith("multipart/"):
            raise InvalidInput(
                "no file", field_errors={"file": ["send the JSON as a `file` field"]}
            )
        return request.data
    if upload.size is not None and upload.size > settings.UPLOAD_MAX_BYTES:
        msg = f"file is {upload.size} bytes; the limit is {settings.UPLOAD_MAX_BYTES}"
        raise InvalidInput(msg, field_errors={"file": [msg]})
    try:
        return json.loads(upload.read())
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(
            "not JSON", field_errors={"file": [f"not JSON: {str(exc)[:200]}"]}
        ) from None


class CocoExportView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "source", str, enum=list(interchange_services.SOURCES),
                description="ground_truth (default) or the deployed model's predictions",
            )
        ],
        responses={200: OpenApiTypes.OBJECT},
    )  # fmt: skip
    def get(self, request: Request, pk: UUID) -> Response:
        project = project_for(request, pk, READ)[0]
        source = request.query_params.get("source", "ground_truth")
        data = interchange_services.project_export_coco(project=project, source=source)
        response = Response(data)
        response["Content-Disposition"] = f'attachment; filename="coco-{source}-{project.id}.json"'
        return response


class LabelStudioExportView(APIView):
    # the whole task list, as Label Studio imports it (not the API's pages)
    @extend_schema(responses={200: TASKS_SCHEMA}, extensions={"x-unpaginated": True})
    def get(self, request: Request, pk: UUID) -> Response:
        project = project_for(request, pk, READ)[0]
        response = Response(interchange_services.project_export_labelstudio(project=project))
        response["Content-Disposition"] = f'attachment; filename="labelstudio-{project.id}.json"'
        return response


class MasksExportView(APIView):
    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project = project_for(request, pk, READ)[0]
        response = HttpResponse(
            interchange_services.project_export_masks_zip(project=project),
            content_type="application/zip",
        )
        response["Content-Disposition"] = f'attachment; filename="masks-{project.id}.zip"'
        return response


class CocoImportView(APIView):
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT, "multipart/form-data": ImportInput},
        responses={200: ImportOutput},
    )
    def post(self, request: Request, pk: UUID) -> Response:
        project = project_for(request, pk, EDIT)[0]
        result = interchange_services.ground_truth_import_coco(
            project=project, data=_json_body(request)
        )
        return Response(result.to_dict())


class LabelStudioImportView(APIView):
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        request={"application/json": TASKS_SCHEMA, "multipart/form-data": ImportInput},
        responses={200: ImportOutput},
    )
    def post(self, request: Request, pk: UUID) -> Response:
        project = project_for(request, pk, EDIT)[0]
        result = interchange_services.ground_truth_import_labelstudio(
            project=project, tasks=_json_body(request)
        )
        return Response(result.to_dict())
