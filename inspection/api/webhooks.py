"""A project's webhooks and their deliveries."""

from __future__ import annotations

from uuid import UUID

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors
from inspection.api import serializers as s
from inspection.api.base import paginate, project_for, row_for
from inspection.api.permissions import ADMIN
from inspection.services import webhooks as webhook_services


class WebhookListView(APIView):
    @extend_schema(responses={200: s.WebhookOutput(many=True)})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk, ADMIN)
        return paginate(self, request, selectors.webhook_list(project=project), s.WebhookOutput)

    @extend_schema(request=s.WebhookInput, responses={201: s.WebhookCreatedOutput})
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk, ADMIN)
        data = s.WebhookInput(data=request.data)
        data.is_valid(raise_exception=True)
        hook = webhook_services.webhook_create(project=project, **data.validated_data)
        return Response(s.WebhookCreatedOutput(hook).data, status=201)


class WebhookDetailView(APIView):
    @extend_schema(responses={200: s.WebhookOutput})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        hook = row_for(request, selectors.webhook_get, pk, ADMIN)
        return Response(s.WebhookOutput(hook).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: UUID) -> HttpResponse:
        hook = row_for(request, selectors.webhook_get, pk, ADMIN)
        webhook_services.webhook_delete(webhook=hook)
        return Response(status=204)


class WebhookDeliveryListView(APIView):
    @extend_schema(responses={200: s.WebhookDeliveryOutput(many=True)})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        hook = row_for(request, selectors.webhook_get, pk, ADMIN)
        return paginate(
            self, request, hook.deliveries.order_by("-created_at"), s.WebhookDeliveryOutput
        )
