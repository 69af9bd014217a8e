"""Model versions: training one, reading, deploying, shadowing, bundling."""

from __future__ import annotations

from uuid import UUID

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors
from inspection.api import serializers as s
from inspection.api.base import DETAIL, paginate, project_for, row_for
from inspection.api.files import attachment
from inspection.api.permissions import EDIT, INSPECT, READ
from inspection.errors import InvalidInput
from inspection.services import bundles as bundle_services
from inspection.services import shadow as shadow_services
from inspection.services import training as training_services


class TrainView(APIView):
    @extend_schema(
        request=s.TrainInput,
        responses={202: inline_serializer("JobAccepted", {"job": s.JobOutput()}), 409: DETAIL},
    )
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk, EDIT)
        data = s.TrainInput(data=request.data or {})
        data.is_valid(raise_exception=True)
        job = training_services.training_start(
            project=project, user=request.user, visible=data.validated_data.get("visible") or ()
        )
        return Response({"job": s.JobOutput(job).data}, status=202)


class ModelListView(APIView):
    @extend_schema(responses={200: s.ModelVersionOutput(many=True)})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk)
        return paginate(
            self,
            request,
            selectors.model_version_list(project=project).select_related("project"),
            s.ModelVersionOutput,
        )


class ModelDetailView(APIView):
    @extend_schema(responses={200: s.ModelVersionOutput})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        mv = row_for(request, selectors.model_version_get, pk, READ)
        return Response(s.ModelVersionOutput(mv).data)


class ModelDeployView(APIView):
    @extend_schema(request=None, responses={200: s.ModelVersionOutput})
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        mv = row_for(request, selectors.model_version_get, pk, EDIT)
        mv = training_services.model_deploy(model_version=mv, user=request.user)
        mv.project.refresh_from_db()
        return Response(s.ModelVersionOutput(mv).data)


class ModelShadowView(APIView):
    """Shadow mode: GET this version's comparison with the deployed model on the
    line's inspections; POST to start shadowing it, DELETE to stop."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        mv = row_for(request, selectors.model_version_get, pk, READ)
        return Response(shadow_services.model_shadow_compare(model_version=mv))

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, 409: DETAIL})
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        mv = row_for(request, selectors.model_version_get, pk, EDIT)
        shadow_services.model_shadow_start(model_version=mv)
        mv.project.refresh_from_db()
        return Response(shadow_services.model_shadow_compare(model_version=mv))

    @extend_schema(responses={204: None, 409: DETAIL})
    def delete(self, request: Request, pk: UUID) -> HttpResponse:
        mv = row_for(request, selectors.model_version_get, pk, EDIT)
        shadow_services.model_shadow_stop(model_version=mv)
        return Response(status=204)


class ModelBundleView(APIView):
    """The model with the active (or ``?rules_version=N``) rules as one file, for
    ``python -m prompting inspect --bundle`` on a line PC."""

    @extend_schema(
        responses={(200, "application/zip"): bytes, 400: DETAIL},
        parameters=[OpenApiParameter("rules_version", int)],
    )
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        mv = row_for(request, selectors.model_version_get, pk, INSPECT)
        raw = request.query_params.get("rules_version")
        version = None
        if raw not in (None, ""):
            try:
                version = int(raw)
            except ValueError:
                raise InvalidInput(
                    "rules_version must be an integer",
                    field_errors={"rules_version": ["must be an integer"]},
                ) from None
        bundle = bundle_services.model_bundle_build(
            model_version=mv, rules_version=version, user=request.user
        )
        response = HttpResponse(bundle.data, content_type="application/zip")
        return attachment(response, bundle.filename)
