"""Sign-in endpoints: API token, dashboard session, who am I."""

from __future__ import annotations

from django.contrib.auth import authenticate, login, logout
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from inspection.api import serializers as s
from inspection.api.base import DETAIL
from inspection.errors import InvalidInput
from inspection.models import Membership


class TokenView(APIView):
    """POST {username, password} → {token}. Throttled."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_scope = "login"
    throttle_classes = [ScopedRateThrottle]

    @extend_schema(request=s.LoginInput, responses={200: s.TokenOutput, 400: DETAIL})
    def post(self, request: Request) -> HttpResponse:
        data = s.LoginInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None:
            raise InvalidInput("wrong username or password", code="bad_credentials")
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


@method_decorator(csrf_protect, name="dispatch")
class SessionView(APIView):
    """Session sign-in for the dashboard (CSRF enforced). GET sets the CSRF cookie."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_scope = "login"
    throttle_classes = [ScopedRateThrottle]

    @method_decorator(ensure_csrf_cookie)
    @extend_schema(
        responses={
            200: inline_serializer("Session", {"authenticated": drf_serializers.BooleanField()})
        }
    )
    def get(self, request: Request) -> HttpResponse:
        return Response(
            {
                "authenticated": request.user.is_authenticated,
                "username": request.user.get_username(),
            }
        )

    @extend_schema(
        request=s.LoginInput,
        responses={
            200: inline_serializer("SessionLogin", {"username": drf_serializers.CharField()})
        },
    )
    def post(self, request: Request) -> HttpResponse:
        data = s.LoginInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None:
            raise InvalidInput("wrong username or password", code="bad_credentials")
        login(request, user)
        return Response({"username": user.get_username()})

    @extend_schema(responses={204: None})
    def delete(self, request: Request) -> HttpResponse:
        logout(request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "Me",
                {"id": drf_serializers.IntegerField(), "username": drf_serializers.CharField()},
            )
        }
    )
    def get(self, request: Request) -> HttpResponse:
        roles = dict(Membership.objects.filter(user=request.user).values_list("project_id", "role"))
        return Response(
            {
                "id": request.user.id,
                "username": request.user.get_username(),
                "projects": {str(k): v for k, v in roles.items()},
            }
        )
