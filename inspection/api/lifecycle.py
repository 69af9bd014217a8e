"""Model lifecycle routes: the candidate and its comparison, the worse-model
guard's two ways out, and the project's next step. Each view checks access,
calls one service and returns its answer."""

from __future__ import annotations

import uuid
from uuid import UUID

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors
from inspection.api.permissions import EDIT, READ, role_require
from inspection.errors import InvalidInput
from inspection.models import ModelVersion, Project
from inspection.services import lifecycle
from inspection.services.next_step import next_step_get

_DETAIL = inline_serializer(
    "LifecycleDetail", {"detail": drf_serializers.CharField(), "code": drf_serializers.CharField()}
)


def _project(request: Request, pk: UUID, need: str = READ) -> Project:
    project = selectors.project_get(user=request.user, pk=pk)
    role_require(user=request.user, project=project, need=need)
    return project


def _model(request: Request, pk: UUID, need: str = READ) -> ModelVersion:
    mv = selectors.model_version_get(user=request.user, pk=pk)
    role_require(user=request.user, project=mv.project, need=need)
    return mv


class ProjectCandidateView(APIView):
    """The deployed version, the candidate (the newest version after it that
    nobody dismissed), the candidate against the deployed version, and the
    guard (the newest version against the one before it, when clearly worse)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: UUID) -> Response:
        project = _project(request, pk)
        return Response(lifecycle.project_candidate_summary(project=project))


class ProjectNextStepView(APIView):
    """The single most useful next step, with the link (or button) that does it."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: UUID) -> Response:
        project = _project(request, pk)
        return Response(next_step_get(project=project).to_dict())


class ModelComparisonView(APIView):
    """This version against another (``?against=<id>``; default: the deployed
    version) on the labelled images neither was trained on and on their
    held-out stroke checks."""

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, 400: _DETAIL, 409: _DETAIL},
        parameters=[OpenApiParameter("against", str, description="model version id")],
    )
    def get(self, request: Request, pk: UUID) -> Response:
        mv = _model(request, pk)
        against = request.query_params.get("against")
        if against:
            try:
                uuid.UUID(against)
            except ValueError:
                raise InvalidInput(
                    "against must be a model version id",
                    field_errors={"against": ["not a valid id"]},
                ) from None
            baseline = mv.project.model_versions.filter(id=against).first()
            if baseline is None:
                raise InvalidInput(
                    "against is not a version of this project",
                    field_errors={"against": ["not a version of this project"]},
                )
        else:
            baseline = mv.project.deployed_model
            if baseline is None:
                raise InvalidInput(
                    "nothing is deployed: name the version to compare with",
                    field_errors={"against": ["required when nothing is deployed"]},
                )
        return Response(lifecycle.model_compare(candidate=mv, baseline=baseline))


class ModelDismissView(APIView):
    """Keep the previous version: this one is no longer the candidate (and, if it
    was deployed, the version before it is deployed again)."""

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, 409: _DETAIL})
    def post(self, request: Request, pk: UUID) -> Response:
        mv = _model(request, pk, EDIT)
        kept = lifecycle.model_dismiss(model_version=mv, user=request.user)
        return Response(
            {
                "dismissed": {"id": str(mv.id), "number": mv.number},
                "kept": None if kept is None else {"id": str(kept.id), "number": kept.number},
            }
        )


class ModelUndoStrokesView(APIView):
    """Undo the strokes added (and bring back those removed) since the version
    before this one, and dismiss this one."""

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, 409: _DETAIL})
    def post(self, request: Request, pk: UUID) -> Response:
        mv = _model(request, pk, EDIT)
        return Response(lifecycle.model_strokes_undo(model_version=mv, user=request.user))
