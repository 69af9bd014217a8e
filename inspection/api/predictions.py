"""Predictions: a project's latest per image, and their mask and overlay files."""

from __future__ import annotations

import uuid
from operator import attrgetter
from uuid import UUID

from django.http import Http404, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from inspection import selectors
from inspection.api import serializers as s
from inspection.api.base import download_wanted, filtered, paginate, project_for, row_for
from inspection.api.files import file_headers, file_response
from inspection.api.filters import PredictionFilter
from inspection.api.permissions import READ
from inspection.errors import InvalidInput
from inspection.services import predictions


class PredictionListView(APIView):
    @extend_schema(
        responses={200: s.PredictionOutput(many=True)},
        parameters=[
            OpenApiParameter("verdict", str),
            OpenApiParameter("image", str),
            OpenApiParameter("disagree", bool),
            OpenApiParameter(
                "uncertainty_min",
                float,
                description="only predictions with at least this uncertain fraction (0..1)",
            ),
            OpenApiParameter(
                "ordering",
                str,
                enum=["image", "uncertainty", "-uncertainty"],
                description="image upload order (default), or by uncertainty: "
                "-uncertainty lists the images where a correction helps most first",
            ),
            OpenApiParameter(
                "model_version",
                str,
                description="latest prediction of each image by this model version (dashboard: compare two versions)",
            ),
        ],
    )
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk)
        mv = request.query_params.get("model_version") or None
        try:
            mv = uuid.UUID(mv) if mv else None
        except ValueError:
            raise InvalidInput(
                "model_version must be a model version id",
                field_errors={"model_version": ["not a valid id"]},
            ) from None
        latest = selectors.predictions_latest(project=project, model_version_id=mv)
        qs = filtered(PredictionFilter, request, latest)
        return paginate(self, request, qs, s.PredictionOutput)


class PredictionFileView(APIView):
    kind = "mask"

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        pred = row_for(
            request, selectors.prediction_get, pk, READ, project=attrgetter("image.project")
        )
        name = pred.mask.name if self.kind == "mask" else pred.overlay.name
        return file_response(
            name, download=download_wanted(request), filename=f"{pred.id}-{self.kind}.png"
        )


class PredictionAnomalyView(APIView):
    """The anomaly map of a prediction as a PNG heat map (RGBA, to lay over the image)."""

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        pred = row_for(
            request, selectors.prediction_get, pk, READ, project=attrgetter("image.project")
        )
        png = predictions.prediction_anomaly_png(pred)
        if png is None:
            raise Http404(
                "this prediction has no anomaly map: its model has no memory bank of good parts "
                "(backbone backend, good parts marked OK or background painted)"
            )
        response = HttpResponse(png, content_type="image/png")
        response["Content-Disposition"] = f'inline; filename="{pred.id}-anomaly.png"'
        return file_headers(response)
