"""Production inspections: inspect, the log (list, export, summary), one decision, its image and pixels, review and promotion."""

from __future__ import annotations

import json
from uuid import UUID

from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors
from inspection.api import serializers as s
from inspection.api.base import DETAIL, download_wanted, filtered, paginate, project_for, row_for
from inspection.api.files import attachment, csv_text, display_response, file_response
from inspection.api.filters import InspectionFilter
from inspection.api.permissions import EDIT, INSPECT, READ
from inspection.errors import InvalidInput
from inspection.services import inspections as inspection_services
from inspection.services import reviews as review_services


class InspectView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": s.InspectInput},
        responses={
            200: s.InspectAnswerOutput,
            202: inline_serializer("BatchAccepted", {"job": s.JobOutput()}),
            409: DETAIL,
        },
    )
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk, INSPECT)
        data = s.InspectInput(data=request.data)
        data.is_valid(raise_exception=True)
        files = data.validated_data["files"]
        station, part_id = data.validated_data["station"], data.validated_data["part_id"]
        if len(files) == 1:
            ((filename, content),) = files
            ins, result = inspection_services.inspection_run_result(
                project=project,
                data=content,
                filename=filename,
                station=station,
                part_id=part_id,
                user=request.user,
            )
            masks = None
            if data.validated_data["masks"] != "none":
                masks = inspection_services.inspection_masks(inspection=ins, result=result)
            return Response(s.InspectAnswerOutput(ins, context={"masks": masks}).data)
        job = inspection_services.inspection_batch_start(
            project=project,
            files=files,
            station=station,
            part_id=part_id,
            user=request.user,
        )
        return Response({"job": s.JobOutput(job).data}, status=202)


class InspectionListView(APIView):
    @extend_schema(
        responses={200: s.InspectionOutput(many=True)},
        parameters=[
            OpenApiParameter(n, str)
            for n in ("verdict", "station", "part_id", "job", "created_after", "created_before")
        ]
        + [
            OpenApiParameter(
                "uncertainty_min",
                float,
                description="only decisions with at least this uncertain fraction (0..1)",
            ),
            OpenApiParameter("reviewed", bool, description="only (un)reviewed decisions"),
            OpenApiParameter("review_verdict", str, enum=["OK", "NG"]),
            OpenApiParameter(
                "misjudged", bool, description="only decisions a review found wrong (or right)"
            ),
            OpenApiParameter("image_kept", bool, description="only decisions with a kept image"),
            OpenApiParameter(
                "ordering",
                str,
                enum=["-created_at", "created_at", "-uncertainty", "uncertainty"],
                description="-uncertainty: the review queue, most unsure decisions first",
            ),
        ],
    )
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk)
        return paginate(
            self,
            request,
            filtered(InspectionFilter, request, selectors.inspection_list(project=project)),
            s.InspectionOutput,
        )


class InspectionExportView(APIView):
    """The log (same filters as the list) as CSV or JSON: ?format=csv|json."""

    @extend_schema(
        responses={(200, "text/csv"): bytes, (200, "application/json"): bytes},
        parameters=[OpenApiParameter("format", str, enum=["csv", "json"])],
    )
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk)
        fmt = request.query_params.get("format", "csv")
        if fmt not in ("csv", "json"):
            raise InvalidInput(
                "format must be csv or json", field_errors={"format": ["csv or json"]}
            )
        qs = filtered(InspectionFilter, request, selectors.inspection_list(project=project))
        rows = selectors.inspection_export_rows(qs, flat=fmt == "csv")
        filename = f"inspections-{project.id}.{fmt}"
        if fmt == "json":
            response = HttpResponse(json.dumps(rows, indent=1), content_type="application/json")
        else:
            response = HttpResponse(
                csv_text(rows, columns=selectors.EXPORT_COLUMNS),
                content_type="text/csv; charset=utf-8",
            )
        return attachment(response, filename)


class InspectionSummaryView(APIView):
    """Counts of the log and of its reviews (the line's real escapes and overkills)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk)
        return Response(review_services.inspection_summary(project=project))


class InspectionDetailView(APIView):
    @extend_schema(responses={200: s.InspectionOutput})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        ins = row_for(request, selectors.inspection_get, pk, READ)
        return Response(s.InspectionOutput(ins).data)


class InspectionImageView(APIView):
    #: the browser rendition (what the engine saw) instead of the file as sent
    display = False

    @extend_schema(responses={(200, "image/*"): bytes, 404: DETAIL})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        ins = row_for(request, selectors.inspection_get, pk, READ)
        if not ins.image_file:
            raise Http404(
                "this inspection kept no image (see the project's keep_inspection_images)"
            )
        name = ins.image_file.name
        if self.display:
            return display_response(name, filename=f"inspection-{ins.id}-display.png")
        return file_response(
            name,
            download=download_wanted(request),
            filename=f"inspection-{ins.id}.{name.rsplit('.', 1)[-1]}",
        )


class InspectionMasksView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "encoding",
                str,
                enum=list(inspection_services.MASK_ENCODINGS),
                description="coco_rle (default): compressed, column-major; "
                "rle: row-major run lengths starting with a run of 0s",
            )
        ],
        responses={200: s.InspectionReplayOutput, 400: DETAIL, 409: DETAIL},
    )
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        ins = row_for(request, selectors.inspection_get, pk, READ)
        answer = inspection_services.inspection_masks_replay(
            inspection=ins, encoding=request.query_params.get("encoding", "coco_rle")
        )
        return Response(s.InspectionReplayOutput(answer).data)


class InspectionReviewView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=s.InspectionReviewInput, responses={200: s.InspectionOutput})
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        ins = row_for(request, selectors.inspection_get, pk, INSPECT)
        data = s.InspectionReviewInput(data=request.data if isinstance(request.data, dict) else {})
        data.is_valid(raise_exception=True)
        review_services.inspection_review_set(
            inspection=ins, user=request.user, **data.validated_data
        )
        ins = selectors.inspection_get(user=request.user, pk=pk)
        return Response(s.InspectionOutput(ins).data)

    @extend_schema(responses={204: None, 409: DETAIL})
    def delete(self, request: Request, pk: UUID) -> HttpResponse:
        ins = row_for(request, selectors.inspection_get, pk, INSPECT)
        review_services.inspection_review_clear(inspection=ins)
        return Response(status=204)


_PROMOTED = inline_serializer(
    "PromoteResult",
    {
        "image": s.ImageOutput(),
        "created": drf_serializers.BooleanField(),
        "job": s.JobOutput(allow_null=True),
    },
)


class InspectionPromoteView(APIView):
    @extend_schema(request=None, responses={201: _PROMOTED, 200: _PROMOTED, 409: DETAIL})
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        ins = row_for(request, selectors.inspection_get, pk, EDIT)
        result = review_services.inspection_promote(inspection=ins, user=request.user)
        return Response(
            {
                "image": s.ImageOutput(result.image, context={"request": request}).data,
                "created": result.created,
                "job": s.JobOutput(result.job).data if result.job else None,
            },
            status=201 if result.created else 200,
        )
