"""A running job's results as they land: ``GET /api/v1/jobs/{id}/predictions/``."""

from __future__ import annotations

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors
from inspection.api import serializers as s
from inspection.api.permissions import READ, role_require
from inspection.errors import InvalidInput


def _page(view: APIView, request: Request, qs) -> Response:
    from rest_framework.settings import api_settings

    cls = api_settings.DEFAULT_PAGINATION_CLASS
    context = {"request": request}
    if not cls:
        return Response(s.PredictionOutput(qs, many=True, context=context).data)
    paginator = cls()
    page = paginator.paginate_queryset(qs, request, view=view)
    data = s.PredictionOutput(page, many=True, context=context).data
    return paginator.get_paginated_response(data)


def _since(raw: str | None):
    if not raw:
        return None
    try:
        moment = parse_datetime(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidInput(
            "since must be an ISO 8601 date and time with its zone",
            field_errors={"since": ["not an ISO 8601 date-time with a zone, e.g. a created_at"]},
        )
    return moment


class JobPredictionListView(APIView):
    """Predictions stored by a job so far, oldest first. A client polls it while
    a training or predict job runs (``since``: the ``created_at`` of the last
    one it has) to show each image as soon as its new prediction lands."""

    @extend_schema(
        responses={200: s.PredictionOutput(many=True)},
        parameters=[
            OpenApiParameter(
                "since",
                str,
                description="only predictions stored after this ISO 8601 date-time "
                "(the created_at of the last one read)",
            )
        ],
    )
    def get(self, request: Request, pk) -> Response:
        job = selectors.job_get(user=request.user, pk=pk)
        role_require(user=request.user, project=job.project, need=READ)
        since = _since(request.query_params.get("since"))
        return _page(self, request, selectors.job_predictions(job=job, since=since))
