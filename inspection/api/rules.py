"""Rule-set endpoints."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection.services import rulesets as ruleset_services


class RuleVocabularyView(APIView):
    """What a rule set may say: every rule type with its fields, blob measures,
    morphology operations and severities. The dashboard's rule editor reads it,
    so a rule type added to the engine needs no change there."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(ruleset_services.ruleset_vocabulary_get())
