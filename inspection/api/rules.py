"""Rule sets: the active one and its versions, backtests and tuning, and the
vocabulary rule editors build their forms from."""

from __future__ import annotations

from uuid import UUID

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors
from inspection.api import serializers as s
from inspection.api.base import DETAIL, paginate, project_for
from inspection.api.permissions import EDIT, READ
from inspection.services import rules as rule_services
from inspection.services import rulesets as ruleset_services


def _rules_body(data):
    """PUT body: the rule set itself, or {"rules": {...}, "note": "..."}."""
    if isinstance(data, dict) and isinstance(data.get("rules"), dict):
        return data["rules"], str(data.get("note", ""))[:200]
    return data, ""


class RulesView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses={200: s.RuleSetOutput})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk)
        rs = ruleset_services.ruleset_active_get(project=project)
        rs.project = project
        return Response(s.RuleSetOutput(rs).data)

    @extend_schema(
        request=inline_serializer(
            "RulesPut",
            {
                "rules": drf_serializers.DictField(),
                "note": drf_serializers.CharField(required=False),
            },
        ),
        responses={200: s.RuleSetOutput, 400: DETAIL},
    )
    def put(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk, EDIT)
        rules, note = _rules_body(request.data)
        rs = rule_services.ruleset_update(project=project, data=rules, user=request.user, note=note)
        project.refresh_from_db()
        rs.project = project
        return Response(s.RuleSetOutput(rs).data)


class RuleVersionListView(APIView):
    @extend_schema(responses={200: s.RuleSetOutput(many=True)})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk)
        return paginate(
            self,
            request,
            selectors.ruleset_list(project=project).select_related("project"),
            s.RuleSetOutput,
        )


def _prefers_async(request) -> bool:
    """RFC 7240: ``Prefer: respond-async`` asks for a job even on a small project."""
    prefs = request.headers.get("Prefer", "")
    return any(p.strip().lower() == "respond-async" for p in prefs.split(","))


def _rules_answer(outcome: rule_services.RulesOutcome) -> Response:
    """200 with the report, or 202 with the job that computes it (``Location``: the job)."""
    if outcome.job is None:
        return Response(outcome.report)
    return Response(
        {"job": s.JobOutput(outcome.job).data},
        status=202,
        headers={"Location": f"/api/v1/jobs/{outcome.job.id}/"},
    )


_RULES_RESPONSES = {
    200: OpenApiTypes.OBJECT,
    202: inline_serializer("RulesJobAccepted", {"job": s.JobOutput()}),
    409: DETAIL,
}


_PREFER = OpenApiParameter(
    "Prefer",
    str,
    OpenApiParameter.HEADER,
    description="respond-async: answer 202 with a job even when the labelled images are few",
)


class _RulesRunView(APIView):
    """POST a backtest or a tune: validate the optional rules, call the service,
    answer its report (200) or its job (202)."""

    parser_classes = [JSONParser]
    need = READ
    start = staticmethod(rule_services.rules_backtest_request)

    @extend_schema(request=s.RulesBacktestInput, responses=_RULES_RESPONSES, parameters=[_PREFER])
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk, self.need)
        data = s.RulesBacktestInput(data=request.data if isinstance(request.data, dict) else {})
        data.is_valid(raise_exception=True)
        return _rules_answer(
            self.start(
                project=project,
                data=data.validated_data.get("rules"),
                user=request.user,
                prefer_async=_prefers_async(request),
            )
        )


class BacktestView(_RulesRunView):
    """A backtest only reads: every member may run one."""


class TuneView(_RulesRunView):
    need = EDIT
    start = staticmethod(rule_services.rules_tune_request)


class RuleVocabularyView(APIView):
    """What a rule set may say: every rule type with its fields, blob measures,
    morphology operations and severities. The dashboard's rule editor reads it,
    so a rule type added to the engine needs no change there."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(ruleset_services.ruleset_vocabulary_get())
