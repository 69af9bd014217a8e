"""Projects and their members."""

from __future__ import annotations

from uuid import UUID

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors
from inspection.api import serializers as s
from inspection.api.base import paginate, project_for
from inspection.api.permissions import ADMIN, EDIT
from inspection.models import Membership
from inspection.services import projects as project_services


class ProjectListView(APIView):
    @extend_schema(responses={200: s.ProjectOutput(many=True)})
    def get(self, request: Request) -> HttpResponse:
        roles = dict(Membership.objects.filter(user=request.user).values_list("project_id", "role"))
        return paginate(
            self, request, selectors.project_list(user=request.user), s.ProjectOutput, roles=roles
        )

    @extend_schema(request=s.ProjectInput, responses={201: s.ProjectOutput})
    def post(self, request: Request) -> HttpResponse:
        data = s.ProjectInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_services.project_create(user=request.user, **data.validated_data)
        return Response(
            s.ProjectOutput(project, context={"request": request, "role": "owner"}).data, status=201
        )


class ProjectDetailView(APIView):
    @extend_schema(responses={200: s.ProjectOutput})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project, role = project_for(request, pk)
        return Response(s.ProjectOutput(project, context={"request": request, "role": role}).data)

    @extend_schema(request=s.ProjectPatchInput, responses={200: s.ProjectOutput})
    def patch(self, request: Request, pk: UUID) -> HttpResponse:
        project, role = project_for(request, pk, EDIT)
        data = s.ProjectPatchInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = project_services.project_update(project=project, data=data.validated_data)
        return Response(s.ProjectOutput(project, context={"request": request, "role": role}).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk, ADMIN)
        project_services.project_delete(project=project)
        return Response(status=204)


class MemberListView(APIView):
    @extend_schema(responses={200: s.MemberOutput(many=True)})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk)
        return paginate(self, request, selectors.membership_list(project=project), s.MemberOutput)

    @extend_schema(request=s.MemberInput, responses={201: s.MemberOutput})
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk, ADMIN)
        data = s.MemberInput(data=request.data)
        data.is_valid(raise_exception=True)
        m = project_services.membership_set(project=project, **data.validated_data)
        return Response(s.MemberOutput(m).data, status=201)


class MemberDetailView(APIView):
    @extend_schema(request=s.MemberPatchInput, responses={200: s.MemberOutput})
    def patch(self, request: Request, pk: UUID, user_id: int) -> HttpResponse:
        project, _ = project_for(request, pk, ADMIN)
        m = selectors.membership_get(project=project, user_id=user_id)
        data = s.MemberPatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        m = project_services.membership_set(
            project=project, username=m.user.username, role=data.validated_data["role"]
        )
        return Response(s.MemberOutput(m).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: UUID, user_id: int) -> HttpResponse:
        project, _ = project_for(request, pk, ADMIN)
        project_services.membership_remove(
            membership=selectors.membership_get(project=project, user_id=user_id)
        )
        return Response(status=204)
