"""Prompts painted on an image, and interactive segmentation from prompts."""

from __future__ import annotations

from operator import attrgetter
from uuid import UUID

import numpy as np
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors
from inspection.api import serializers as s
from inspection.api.base import DETAIL, paginate, row_for
from inspection.api.permissions import EDIT, READ
from inspection.errors import InvalidInput
from inspection.services import prompts as prompt_services
from inspection.services import segment as segment_services


class PromptListView(APIView):
    @extend_schema(
        responses={200: s.PromptOutput(many=True)},
        parameters=[OpenApiParameter("include_deleted", bool)],
    )
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        image = row_for(request, selectors.image_get, pk, READ)
        include = request.query_params.get("include_deleted") in ("1", "true")
        return paginate(
            self,
            request,
            selectors.prompt_list(image=image, include_deleted=include),
            s.PromptOutput,
        )

    @extend_schema(request=s.PromptInput, responses={201: s.PromptOutput})
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        image = row_for(request, selectors.image_get, pk, EDIT)
        if not isinstance(request.data, dict):
            raise InvalidInput("a prompt must be a JSON object")
        prompt = prompt_services.prompt_create(
            image=image, data=dict(request.data), user=request.user
        )
        return Response(s.PromptOutput(prompt).data, status=201)


class PromptDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: UUID) -> HttpResponse:
        prompt = row_for(
            request, selectors.prompt_get, pk, EDIT, project=attrgetter("image.project")
        )
        prompt_services.prompt_delete(prompt=prompt)
        return Response(status=204)


class SegmentView(APIView):
    @extend_schema(
        request=s.SegmentInput,
        responses={
            200: inline_serializer(
                "Segment",
                {
                    "label": drf_serializers.CharField(),
                    "engine": drf_serializers.ChoiceField(choices=["sam", "backbone"]),
                    "score": drf_serializers.FloatField(),
                    "time_ms": drf_serializers.FloatField(),
                    "features_ms": drf_serializers.FloatField(),
                    "level": drf_serializers.FloatField(allow_null=True),
                    "mask_png": drf_serializers.CharField(),
                    "rle": drf_serializers.DictField(),
                    "polygons": drf_serializers.ListField(
                        child=drf_serializers.ListField(
                            child=drf_serializers.ListField(child=drf_serializers.FloatField())
                        )
                    ),
                },
            ),
            409: DETAIL,
        },
    )
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        image = row_for(request, selectors.image_get, pk, EDIT)
        data = s.SegmentInput(data=request.data)
        data.is_valid(raise_exception=True)
        out = segment_services.segment_run(
            image=image,
            prompts=data.validated_data["prompts"],
            target=data.validated_data.get("label"),
            user=request.user,
            level=data.validated_data.get("level"),
        )
        fmt = data.validated_data.get("output", "both")
        body = {
            "label": out.label,
            "engine": out.engine,
            "score": out.score,
            "time_ms": round(out.time_ms, 2),
            "features_ms": round(out.features_ms, 2),
            "level": None if out.level is None else round(out.level, 4),
            "service_ms": round(out.service_ms, 2),
            "width": image.width,
            "height": image.height,
            "area_px": int(np.count_nonzero(out.mask)),
        }
        if fmt in ("png", "both"):
            body["mask_png"] = segment_services.mask_png_base64(out.mask)
        if fmt in ("rle", "both"):
            body["rle"] = segment_services.mask_rle(out.mask)
        if fmt == "polygons":
            body["polygons"] = segment_services.mask_polygons_list(out.mask)
        return Response(body)


class SegmentPrepareView(APIView):
    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "SegmentReady",
                {
                    "engine": drf_serializers.ChoiceField(choices=["sam", "backbone"]),
                    "ready": drf_serializers.BooleanField(),
                    "job": s.JobOutput(allow_null=True),
                },
            ),
            202: inline_serializer(
                "SegmentPreparing",
                {
                    "engine": drf_serializers.ChoiceField(choices=["sam", "backbone"]),
                    "ready": drf_serializers.BooleanField(),
                    "job": s.JobOutput(),
                },
            ),
            409: DETAIL,
        },
    )
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        """Get the image ready for points and boxes: 200 when a click is answered at
        once, 202 with the ``embed`` job computing what clicks need (the editor calls
        this when it opens an image, so the first click is as fast as the next)."""
        image = row_for(request, selectors.image_get, pk, EDIT)
        out = segment_services.segment_prepare(image=image, user=request.user)
        body = {
            "engine": out.engine,
            "ready": out.ready,
            "job": s.JobOutput(out.job).data if out.job is not None else None,
        }
        return Response(body, status=200 if out.ready else 202)
