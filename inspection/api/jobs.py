"""Jobs: a project's list, one job, cancelling it, the predictions it has stored so far."""

from __future__ import annotations

from uuid import UUID

from django.http import HttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors
from inspection.api import serializers as s
from inspection.api.base import DETAIL, filtered, paginate, project_for, row_for
from inspection.api.filters import JobFilter
from inspection.api.permissions import EDIT, INSPECT, READ, role_require
from inspection.errors import InvalidInput
from inspection.models import Job
from inspection.services import job_control


class ProjectJobListView(APIView):
    @extend_schema(
        responses={200: s.JobOutput(many=True)},
        parameters=[OpenApiParameter("kind", str), OpenApiParameter("state", str)],
    )
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk)
        qs = filtered(JobFilter, request, selectors.job_list(project=project))
        return paginate(self, request, qs, s.JobOutput)


class JobDetailView(APIView):
    @extend_schema(responses={200: s.JobOutput})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        job = row_for(request, selectors.job_get, pk, READ)
        return Response(s.JobOutput(job).data)


class JobCancelView(APIView):
    @extend_schema(request=None, responses={200: s.JobOutput, 409: DETAIL})
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        job = selectors.job_get(user=request.user, pk=pk)
        need = INSPECT if job.kind == Job.Kind.INSPECT_BATCH else EDIT
        role_require(user=request.user, project=job.project, need=need)
        return Response(s.JobOutput(job_control.job_cancel(job=job)).data)


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
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        job = row_for(request, selectors.job_get, pk, READ)
        since = _since(request.query_params.get("since"))
        return paginate(
            self, request, selectors.job_predictions(job=job, since=since), s.PredictionOutput
        )
