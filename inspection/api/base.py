"""What every endpoint module shares: finding a row the caller may use,
pagination, filters, and the error schema."""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar

from django.db.models import QuerySet
from django_filters import FilterSet
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from inspection import selectors
from inspection.api.permissions import READ, role_require
from inspection.models import Project

T = TypeVar("T")

#: the error body, for the schema: {"detail", "code", ...}
DETAIL = inline_serializer(
    "Detail", {"detail": drf_serializers.CharField(), "code": drf_serializers.CharField()}
)


def project_for(request: Request, pk: Any, need: str = READ) -> tuple[Project, str]:
    """The project ``pk`` (404 unless the caller is a member) and the caller's
    role, which must allow ``need`` (403 otherwise)."""
    project = selectors.project_get(user=request.user, pk=pk)
    role = role_require(user=request.user, project=project, need=need)
    return project, role


def row_for(
    request: Request,
    get: Callable[..., T],
    pk: Any,
    need: str = READ,
    *,
    project: Callable[[T], Project] = attrgetter("project"),
) -> T:
    """The row ``get(user=, pk=)`` finds (404 unless the caller is a member of
    its project); the caller's role in ``project(row)`` must allow ``need``."""
    row = get(user=request.user, pk=pk)
    role_require(user=request.user, project=project(row), need=need)
    return row


def paginate(
    view: APIView,
    request: Request,
    qs: QuerySet,
    serializer_cls: type[BaseSerializer],
    **context: Any,
) -> Response:
    """One page of ``qs`` serialized (the whole list when pagination is off)."""
    cls = api_settings.DEFAULT_PAGINATION_CLASS
    paginator = cls() if cls else None
    context = {"request": request, **context}
    if paginator is None:
        return Response(serializer_cls(qs, many=True, context=context).data)
    page = paginator.paginate_queryset(qs, request, view=view)
    return paginator.get_paginated_response(serializer_cls(page, many=True, context=context).data)


def filtered(filterset_cls: type[FilterSet], request: Request, qs: QuerySet) -> QuerySet:
    """``qs`` narrowed by the query parameters; 400 naming invalid ones."""
    fs = filterset_cls(request.query_params, queryset=qs)
    if not fs.is_valid():
        raise ValidationError(fs.errors)
    return fs.qs


def download_wanted(request: Request) -> bool:
    """``?download=1``: serve as an attachment instead of inline."""
    return request.query_params.get("download") in ("1", "true", "yes")
