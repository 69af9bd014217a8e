"""REST API views: validate input, call one service, serialize the output."""

from __future__ import annotations

import csv
import io
import json

import django_filters
import numpy as np
from django.contrib.auth import authenticate, login, logout
from django.http import FileResponse, Http404, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors
from inspection.api import serializers as s
from inspection.api.permissions import ADMIN, EDIT, INSPECT, READ, role_require
from inspection.errors import InvalidInput
from inspection.models import Image, Inspection, Job, Membership, Prediction
from inspection.services import bundles as bundle_services
from inspection.services import images as image_services
from inspection.services import inspections as inspection_services
from inspection.services import jobs as job_services
from inspection.services import projects as project_services
from inspection.services import prompts as prompt_services
from inspection.services import reviews as review_services
from inspection.services import rules as rule_services
from inspection.services import rulesets as ruleset_services
from inspection.services import segment as segment_services
from inspection.services import shadow as shadow_services
from inspection.services import training as training_services
from inspection.services import webhooks as webhook_services

_DETAIL = inline_serializer(
    "Detail", {"detail": drf_serializers.CharField(), "code": drf_serializers.CharField()}
)


def _project(request, pk, need: str = READ):
    project = selectors.project_get(user=request.user, pk=pk)
    role = role_require(user=request.user, project=project, need=need)
    return project, role


def _paginate(view: APIView, request, qs, serializer_cls, **context):
    from rest_framework.settings import api_settings

    cls = api_settings.DEFAULT_PAGINATION_CLASS
    paginator = cls() if cls else None
    context = {"request": request, **context}
    if paginator is None:
        return Response(serializer_cls(qs, many=True, context=context).data)
    page = paginator.paginate_queryset(qs, request, view=view)
    return paginator.get_paginated_response(serializer_cls(page, many=True, context=context).data)


def _filter(filterset_cls, request, qs):
    fs = filterset_cls(request.query_params, queryset=qs)
    if not fs.is_valid():
        raise ValidationError(fs.errors)
    return fs.qs


def _file(name: str, *, download: bool, filename: str, content_type: str = "") -> FileResponse:
    """Serve a stored file that can't be mistaken for a page: fixed content type,
    Content-Disposition, nosniff, and a sandbox CSP."""
    if not name:
        raise Http404("no such file")
    ext = name.rsplit(".", 1)[-1].lower()
    content_type = content_type or {
        "png": "image/png",
        "jpg": "image/jpeg",
        "bmp": "image/bmp",
        "tif": "image/tiff",
        "npz": "application/octet-stream",
    }.get(ext, "application/octet-stream")
    from django.core.files.storage import default_storage

    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404("file missing from storage") from None
    response = FileResponse(
        handle, content_type=content_type, as_attachment=download, filename=filename
    )
    if not download:
        response["Content-Disposition"] = f'inline; filename="{filename}"'
    return _file_headers(response)


def _file_headers(response):
    """Headers every served file gets: no sniffing, sandboxed, cached privately."""
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=60"
    return response


def _display(name: str, *, filename: str):
    """Serve the stored image ``name`` as a browser draws the engine's pixels: the
    file itself when it already is that, else a PNG rendition (TIFF, 16-bit...)."""
    if not name:
        raise Http404("no such file")
    try:
        shown = image_services.image_display(name=name)
    except FileNotFoundError:
        raise Http404("file missing from storage") from None
    if shown is None:
        return _file(name, download=False, filename=filename)
    data, content_type = shown
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="{filename.rsplit(".", 1)[0]}.png"'
    return _file_headers(response)


def _download(request) -> bool:
    return request.query_params.get("download") in ("1", "true", "yes")


# --- auth -----------------------------------------------------------------------
class TokenView(APIView):
    """POST {username, password} → {token}. Throttled."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_scope = "login"
    from rest_framework.throttling import ScopedRateThrottle

    throttle_classes = [ScopedRateThrottle]

    @extend_schema(request=s.LoginInput, responses={200: s.TokenOutput, 400: _DETAIL})
    def post(self, request):
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
    from rest_framework.throttling import ScopedRateThrottle

    throttle_classes = [ScopedRateThrottle]

    @method_decorator(ensure_csrf_cookie)
    @extend_schema(
        responses={
            200: inline_serializer("Session", {"authenticated": drf_serializers.BooleanField()})
        }
    )
    def get(self, request):
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
    def post(self, request):
        data = s.LoginInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None:
            raise InvalidInput("wrong username or password", code="bad_credentials")
        login(request, user)
        return Response({"username": user.get_username()})

    @extend_schema(responses={204: None})
    def delete(self, request):
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
    def get(self, request):
        roles = dict(Membership.objects.filter(user=request.user).values_list("project_id", "role"))
        return Response(
            {
                "id": request.user.id,
                "username": request.user.get_username(),
                "projects": {str(k): v for k, v in roles.items()},
            }
        )


# --- projects ----------------------------------------------------------------
class ProjectListView(APIView):
    @extend_schema(responses={200: s.ProjectOutput(many=True)})
    def get(self, request):
        roles = dict(Membership.objects.filter(user=request.user).values_list("project_id", "role"))
        return _paginate(
            self, request, selectors.project_list(user=request.user), s.ProjectOutput, roles=roles
        )

    @extend_schema(request=s.ProjectInput, responses={201: s.ProjectOutput})
    def post(self, request):
        data = s.ProjectInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_services.project_create(user=request.user, **data.validated_data)
        return Response(
            s.ProjectOutput(project, context={"request": request, "role": "owner"}).data, status=201
        )


class ProjectDetailView(APIView):
    @extend_schema(responses={200: s.ProjectOutput})
    def get(self, request, pk):
        project, role = _project(request, pk)
        return Response(s.ProjectOutput(project, context={"request": request, "role": role}).data)

    @extend_schema(request=s.ProjectPatchInput, responses={200: s.ProjectOutput})
    def patch(self, request, pk):
        project, role = _project(request, pk, EDIT)
        data = s.ProjectPatchInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = project_services.project_update(project=project, data=data.validated_data)
        return Response(s.ProjectOutput(project, context={"request": request, "role": role}).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        project, _ = _project(request, pk, ADMIN)
        project_services.project_delete(project=project)
        return Response(status=204)


class MemberListView(APIView):
    @extend_schema(responses={200: s.MemberOutput(many=True)})
    def get(self, request, pk):
        project, _ = _project(request, pk)
        return _paginate(self, request, selectors.membership_list(project=project), s.MemberOutput)

    @extend_schema(request=s.MemberInput, responses={201: s.MemberOutput})
    def post(self, request, pk):
        project, _ = _project(request, pk, ADMIN)
        data = s.MemberInput(data=request.data)
        data.is_valid(raise_exception=True)
        m = project_services.membership_set(project=project, **data.validated_data)
        return Response(s.MemberOutput(m).data, status=201)


class MemberDetailView(APIView):
    @extend_schema(request=s.MemberPatchInput, responses={200: s.MemberOutput})
    def patch(self, request, pk, user_id):
        project, _ = _project(request, pk, ADMIN)
        m = selectors.membership_get(project=project, user_id=user_id)
        data = s.MemberPatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        m = project_services.membership_set(
            project=project, username=m.user.username, role=data.validated_data["role"]
        )
        return Response(s.MemberOutput(m).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk, user_id):
        project, _ = _project(request, pk, ADMIN)
        project_services.membership_remove(
            membership=selectors.membership_get(project=project, user_id=user_id)
        )
        return Response(status=204)


# --- images ----------------------------------------------------------------------
class ImageFilter(django_filters.FilterSet):
    verdict = django_filters.ChoiceFilter(
        choices=[("OK", "OK"), ("NG", "NG"), ("none", "none")], method="f_verdict"
    )
    has_prompts = django_filters.BooleanFilter(method="f_has_prompts")
    has_ground_truth = django_filters.BooleanFilter(method="f_has_gt")

    class Meta:
        model = Image
        fields: list = []

    def f_verdict(self, qs, name, value):
        return qs.filter(verdict="" if value == "none" else value)

    def f_has_prompts(self, qs, name, value):
        return qs.filter(n_prompts__gt=0) if value else qs.filter(n_prompts=0)

    def f_has_gt(self, qs, name, value):
        return qs.exclude(verdict="") if value else qs.filter(verdict="")


class ImageListView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        responses={200: s.ImageOutput(many=True)},
        parameters=[
            OpenApiParameter("verdict", str),
            OpenApiParameter("has_prompts", bool),
            OpenApiParameter("has_ground_truth", bool),
        ],
    )
    def get(self, request, pk):
        project, _ = _project(request, pk)
        qs = _filter(ImageFilter, request, selectors.image_list(project=project))
        response = _paginate(self, request, qs, s.ImageOutput)
        response.data["cold_start"] = image_services.cold_start_status(project=project)
        return response

    @extend_schema(
        request={"multipart/form-data": s.ImageUploadInput},
        responses={
            201: inline_serializer(
                "Upload",
                {
                    "images": s.ImageOutput(many=True),
                    "created": drf_serializers.IntegerField(),
                    "duplicates": drf_serializers.IntegerField(),
                    "cold_start": drf_serializers.DictField(),
                },
            )
        },
    )
    def post(self, request, pk):
        from django.conf import settings

        project, _ = _project(request, pk, EDIT)
        files = request.FILES.getlist("file")
        masks = request.FILES.getlist("mask")
        if not files:
            raise InvalidInput(
                "no image", field_errors={"file": ["send one or more `file` fields"]}
            )
        if len(files) > settings.UPLOAD_MAX_FILES:
            raise InvalidInput(
                "too many files",
                field_errors={"file": [f"at most {settings.UPLOAD_MAX_FILES} files per request"]},
            )
        if masks and len(masks) != len(files):
            raise InvalidInput(
                "masks don't match files",
                field_errors={"mask": ["send one `mask` per `file`, in the same order"]},
            )
        verdict = request.data.get("verdict") or None
        results = image_services.images_upload(
            project=project,
            files=[(f.name, _read(f, "file")) for f in files],
            masks=[_read(m, "mask") for m in masks] or None,
            verdict=verdict,
            user=request.user,
        )
        images = [
            dict(s.ImageOutput(r.image, context={"request": request}).data, duplicate=r.duplicate)
            for r in results
        ]
        created = sum(not r.duplicate for r in results)
        body = {
            "images": images,
            "created": created,
            "duplicates": len(results) - created,
            "cold_start": image_services.cold_start_status(project=project),
        }
        return Response(body, status=201 if created else 200)


def _read(upload, field: str) -> bytes:
    from django.conf import settings

    if upload.size is not None and upload.size > settings.UPLOAD_MAX_BYTES:
        msg = f"{field} is {upload.size} bytes; the limit is {settings.UPLOAD_MAX_BYTES}"
        raise InvalidInput(msg, field_errors={field: [msg]})
    return upload.read()


class ImageDetailView(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(responses={200: s.ImageOutput})
    def get(self, request, pk):
        image = selectors.image_get(user=request.user, pk=pk)
        role_require(user=request.user, project=image.project, need=READ)
        return Response(s.ImageOutput(image, context={"request": request}).data)

    @extend_schema(
        request={"multipart/form-data": s.ImagePatchInput, "application/json": s.ImagePatchInput},
        responses={200: s.ImageOutput},
    )
    def patch(self, request, pk):
        image = selectors.image_get(user=request.user, pk=pk)
        role_require(user=request.user, project=image.project, need=EDIT)
        data = s.ImagePatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        mask = data.validated_data.get("mask")
        image = image_services.image_ground_truth_set(
            image=image,
            verdict=data.validated_data.get("verdict"),
            mask=_read(mask, "mask") if mask else None,
            clear_mask=data.validated_data.get("clear_mask", False),
        )
        return Response(s.ImageOutput(image, context={"request": request}).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        image = selectors.image_get(user=request.user, pk=pk)
        role_require(user=request.user, project=image.project, need=EDIT)
        image_services.image_delete(image=image)
        return Response(status=204)


class ImageFileView(APIView):
    kind = "file"

    @extend_schema(responses={(200, "image/*"): bytes})
    def get(self, request, pk):
        image = selectors.image_get(user=request.user, pk=pk)
        role_require(user=request.user, project=image.project, need=READ)
        if self.kind == "display":
            return _display(image.file.name, filename=f"{image.id}-display.png")
        if self.kind == "file":
            name = image.file.name
        elif self.kind == "thumbnail":
            name = image.thumbnail.name
        elif self.kind == "mask":
            name = image.mask.name
        else:
            pred = selectors.prediction_latest_for_image(image=image)
            if pred is None:
                raise Http404("no prediction for this image yet: train a model")
            name = pred.overlay.name
        ext = name.rsplit(".", 1)[-1] if name else "bin"
        return _file(name, download=_download(request), filename=f"{image.id}-{self.kind}.{ext}")


# --- prompts -----------------------------------------------------------------------
class PromptListView(APIView):
    @extend_schema(
        responses={200: s.PromptOutput(many=True)},
        parameters=[OpenApiParameter("include_deleted", bool)],
    )
    def get(self, request, pk):
        image = selectors.image_get(user=request.user, pk=pk)
        role_require(user=request.user, project=image.project, need=READ)
        include = request.query_params.get("include_deleted") in ("1", "true")
        return _paginate(
            self,
            request,
            selectors.prompt_list(image=image, include_deleted=include),
            s.PromptOutput,
        )

    @extend_schema(request=s.PromptInput, responses={201: s.PromptOutput})
    def post(self, request, pk):
        image = selectors.image_get(user=request.user, pk=pk)
        role_require(user=request.user, project=image.project, need=EDIT)
        if not isinstance(request.data, dict):
            raise InvalidInput("a prompt must be a JSON object")
        prompt = prompt_services.prompt_create(
            image=image, data=dict(request.data), user=request.user
        )
        return Response(s.PromptOutput(prompt).data, status=201)


class PromptDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        prompt = selectors.prompt_get(user=request.user, pk=pk)
        role_require(user=request.user, project=prompt.image.project, need=EDIT)
        prompt_services.prompt_delete(prompt=prompt)
        return Response(status=204)


class SegmentView(APIView):
    @extend_schema(
        request=s.SegmentInput,
        responses={
            200: inline_serializer(
                "Segment",
                {
                    "score": drf_serializers.FloatField(),
                    "time_ms": drf_serializers.FloatField(),
                    "mask_png": drf_serializers.CharField(),
                    "rle": drf_serializers.DictField(),
                },
            ),
            409: _DETAIL,
        },
    )
    def post(self, request, pk):
        image = selectors.image_get(user=request.user, pk=pk)
        role_require(user=request.user, project=image.project, need=EDIT)
        data = s.SegmentInput(data=request.data)
        data.is_valid(raise_exception=True)
        out = segment_services.segment_run(
            image=image,
            prompts=data.validated_data["prompts"],
            target=data.validated_data.get("label"),
            user=request.user,
        )
        fmt = data.validated_data.get("output", "both")
        body = {
            "label": out.label,
            "score": out.score,
            "time_ms": round(out.time_ms, 2),
            "service_ms": round(out.service_ms, 2),
            "width": image.width,
            "height": image.height,
            "area_px": int(np.count_nonzero(out.mask)),
        }
        if fmt in ("png", "both"):
            body["mask_png"] = segment_services.mask_png_base64(out.mask)
        if fmt in ("rle", "both"):
            body["rle"] = segment_services.mask_rle(out.mask)
        return Response(body)


# --- training and jobs ------------------------------------------------------------
class TrainView(APIView):
    @extend_schema(
        request=None,
        responses={202: inline_serializer("JobAccepted", {"job": s.JobOutput()}), 409: _DETAIL},
    )
    def post(self, request, pk):
        project, _ = _project(request, pk, EDIT)
        job = training_services.training_start(project=project, user=request.user)
        return Response({"job": s.JobOutput(job).data}, status=202)


class JobFilter(django_filters.FilterSet):
    class Meta:
        model = Job
        fields = ["kind", "state"]


class ProjectJobListView(APIView):
    @extend_schema(
        responses={200: s.JobOutput(many=True)},
        parameters=[OpenApiParameter("kind", str), OpenApiParameter("state", str)],
    )
    def get(self, request, pk):
        project, _ = _project(request, pk)
        job_services.jobs_sweep_stale(project=project)
        return _paginate(
            self,
            request,
            _filter(JobFilter, request, selectors.job_list(project=project)),
            s.JobOutput,
        )


class JobDetailView(APIView):
    @extend_schema(responses={200: s.JobOutput})
    def get(self, request, pk):
        job = selectors.job_get(user=request.user, pk=pk)
        role_require(user=request.user, project=job.project, need=READ)
        if job.state == Job.State.RUNNING:
            job_services.jobs_sweep_stale(project=job.project)
            job.refresh_from_db()
        return Response(s.JobOutput(job).data)


class JobCancelView(APIView):
    @extend_schema(request=None, responses={200: s.JobOutput, 409: _DETAIL})
    def post(self, request, pk):
        job = selectors.job_get(user=request.user, pk=pk)
        need = INSPECT if job.kind == Job.Kind.INSPECT_BATCH else EDIT
        role_require(user=request.user, project=job.project, need=need)
        return Response(s.JobOutput(job_services.job_cancel(job=job)).data)


# --- models -------------------------------------------------------------------------
class ModelListView(APIView):
    @extend_schema(responses={200: s.ModelVersionOutput(many=True)})
    def get(self, request, pk):
        project, _ = _project(request, pk)
        return _paginate(
            self,
            request,
            selectors.model_version_list(project=project).select_related("project"),
            s.ModelVersionOutput,
        )


class ModelDetailView(APIView):
    @extend_schema(responses={200: s.ModelVersionOutput})
    def get(self, request, pk):
        mv = selectors.model_version_get(user=request.user, pk=pk)
        role_require(user=request.user, project=mv.project, need=READ)
        return Response(s.ModelVersionOutput(mv).data)


class ModelDeployView(APIView):
    @extend_schema(request=None, responses={200: s.ModelVersionOutput})
    def post(self, request, pk):
        mv = selectors.model_version_get(user=request.user, pk=pk)
        role_require(user=request.user, project=mv.project, need=EDIT)
        mv = training_services.model_deploy(model_version=mv, user=request.user)
        mv.project.refresh_from_db()
        return Response(s.ModelVersionOutput(mv).data)


class ModelShadowView(APIView):
    """Shadow mode: GET this version's comparison with the deployed model on the
    line's inspections; POST to start shadowing it, DELETE to stop."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, pk):
        mv = selectors.model_version_get(user=request.user, pk=pk)
        role_require(user=request.user, project=mv.project, need=READ)
        return Response(shadow_services.model_shadow_compare(model_version=mv))

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, 409: _DETAIL})
    def post(self, request, pk):
        mv = selectors.model_version_get(user=request.user, pk=pk)
        role_require(user=request.user, project=mv.project, need=EDIT)
        shadow_services.model_shadow_start(model_version=mv)
        mv.project.refresh_from_db()
        return Response(shadow_services.model_shadow_compare(model_version=mv))

    @extend_schema(responses={204: None, 409: _DETAIL})
    def delete(self, request, pk):
        mv = selectors.model_version_get(user=request.user, pk=pk)
        role_require(user=request.user, project=mv.project, need=EDIT)
        shadow_services.model_shadow_stop(model_version=mv)
        return Response(status=204)


class ModelBundleView(APIView):
    """The model with the active (or ``?rules_version=N``) rules as one file, for
    ``python -m prompting inspect --bundle`` on a line PC."""

    @extend_schema(
        responses={(200, "application/zip"): bytes, 400: _DETAIL},
        parameters=[OpenApiParameter("rules_version", int)],
    )
    def get(self, request, pk):
        mv = selectors.model_version_get(user=request.user, pk=pk)
        role_require(user=request.user, project=mv.project, need=INSPECT)
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
        response["Content-Disposition"] = f'attachment; filename="{bundle.filename}"'
        response["X-Content-Type-Options"] = "nosniff"
        return response


# --- rules ------------------------------------------------------------------------
def _rules_body(data):
    """PUT body: the rule set itself, or {"rules": {...}, "note": "..."}."""
    if isinstance(data, dict) and isinstance(data.get("rules"), dict):
        return data["rules"], str(data.get("note", ""))[:200]
    return data, ""


class RulesView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses={200: s.RuleSetOutput})
    def get(self, request, pk):
        project, _ = _project(request, pk)
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
        responses={200: s.RuleSetOutput, 400: _DETAIL},
    )
    def put(self, request, pk):
        project, _ = _project(request, pk, EDIT)
        rules, note = _rules_body(request.data)
        rs = rule_services.ruleset_update(project=project, data=rules, user=request.user, note=note)
        project.refresh_from_db()
        rs.project = project
        return Response(s.RuleSetOutput(rs).data)


class RuleVersionListView(APIView):
    @extend_schema(responses={200: s.RuleSetOutput(many=True)})
    def get(self, request, pk):
        project, _ = _project(request, pk)
        return _paginate(
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
    409: _DETAIL,
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
    def post(self, request, pk):
        project, _ = _project(request, pk, self.need)
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


# --- predictions ---------------------------------------------------------------
class PredictionFilter(django_filters.FilterSet):
    verdict = django_filters.ChoiceFilter(choices=[("OK", "OK"), ("NG", "NG")])
    image = django_filters.UUIDFilter(field_name="image_id")
    disagree = django_filters.BooleanFilter(method="f_disagree")
    uncertainty_min = django_filters.NumberFilter(field_name="uncertainty", lookup_expr="gte")
    ordering = django_filters.ChoiceFilter(
        choices=[(v, v) for v in ("image", "uncertainty", "-uncertainty")], method="f_ordering"
    )

    class Meta:
        model = Prediction
        fields = ["verdict", "image"]

    def f_ordering(self, qs, name, value):
        """``-uncertainty``: the images a correction helps most first ("review next");
        predictions stored before uncertainty was measured come last either way."""
        from django.db.models import F

        if value == "image":
            return qs
        field = F("uncertainty")
        key = field.desc(nulls_last=True) if value.startswith("-") else field.asc(nulls_last=True)
        return qs.order_by(key, "image__created_at", "image_id")

    def f_disagree(self, qs, name, value):
        from django.db.models import F

        labelled = qs.exclude(image__verdict="")
        return (
            labelled.exclude(verdict=F("image__verdict"))
            if value
            else labelled.filter(verdict=F("image__verdict"))
        )


class PredictionListView(APIView):
    @extend_schema(
        responses={200: s.PredictionOutput(many=True)},
        parameters=[
            OpenApiParameter("verdict", str),
            OpenApiParameter("image", str),
            OpenApiParameter("disagree", bool),
            OpenApiParameter(
                "uncertainty_min",
                float,
                description="only predictions with at least this uncertain fraction (0..1)",
            ),
            OpenApiParameter(
                "ordering",
                str,
                enum=["image", "uncertainty", "-uncertainty"],
                description="image upload order (default), or by uncertainty: "
                "-uncertainty lists the images where a correction helps most first",
            ),
            OpenApiParameter(
                "model_version",
                str,
                description="latest prediction of each image by this model version (dashboard: compare two versions)",
            ),
        ],
    )
    def get(self, request, pk):
        import uuid

        project, _ = _project(request, pk)
        mv = request.query_params.get("model_version") or None
        try:
            mv = uuid.UUID(mv) if mv else None
        except ValueError:
            raise InvalidInput(
                "model_version must be a model version id",
                field_errors={"model_version": ["not a valid id"]},
            ) from None
        latest = selectors.predictions_latest(project=project, model_version_id=mv)
        qs = _filter(PredictionFilter, request, latest)
        return _paginate(self, request, qs, s.PredictionOutput)


class PredictionFileView(APIView):
    kind = "mask"

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request, pk):
        pred = selectors.prediction_get(user=request.user, pk=pk)
        role_require(user=request.user, project=pred.image.project, need=READ)
        name = pred.mask.name if self.kind == "mask" else pred.overlay.name
        return _file(name, download=_download(request), filename=f"{pred.id}-{self.kind}.png")


# --- inspections ------------------------------------------------------------------
class InspectView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": s.InspectInput},
        responses={
            200: s.InspectionOutput,
            202: inline_serializer("BatchAccepted", {"job": s.JobOutput()}),
            409: _DETAIL,
        },
    )
    def post(self, request, pk):
        from django.conf import settings

        project, _ = _project(request, pk, INSPECT)
        files = request.FILES.getlist("file")
        if not files:
            raise InvalidInput(
                "no image", field_errors={"file": ["send one or more `file` fields"]}
            )
        if len(files) > settings.UPLOAD_MAX_FILES:
            raise InvalidInput(
                "too many files",
                field_errors={"file": [f"at most {settings.UPLOAD_MAX_FILES} files per request"]},
            )
        station = str(request.data.get("station", ""))[:100]
        part_id = str(request.data.get("part_id", ""))[:200]
        if len(files) == 1:
            ins = inspection_services.inspection_run(
                project=project,
                data=_read(files[0], "file"),
                filename=files[0].name,
                station=station,
                part_id=part_id,
                user=request.user,
            )
            return Response(s.InspectionOutput(ins).data)
        job = inspection_services.inspection_batch_start(
            project=project,
            files=[(f.name, _read(f, "file")) for f in files],
            station=station,
            part_id=part_id,
            user=request.user,
        )
        return Response({"job": s.JobOutput(job).data}, status=202)


class InspectionFilter(django_filters.FilterSet):
    verdict = django_filters.ChoiceFilter(choices=[("OK", "OK"), ("NG", "NG")])
    station = django_filters.CharFilter()
    part_id = django_filters.CharFilter()
    job = django_filters.UUIDFilter(field_name="job_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    #: decisions to double-check by hand: at least this fraction of uncertain pixels
    uncertainty_min = django_filters.NumberFilter(field_name="uncertainty", lookup_expr="gte")
    reviewed = django_filters.BooleanFilter(field_name="review", lookup_expr="isnull", exclude=True)
    review_verdict = django_filters.ChoiceFilter(
        field_name="review__verdict", choices=[("OK", "OK"), ("NG", "NG")]
    )
    misjudged = django_filters.BooleanFilter(method="f_misjudged")
    image_kept = django_filters.BooleanFilter(method="f_image_kept")
    #: false: images the input check flagged (unlike the training images); true: passed
    input_ok = django_filters.BooleanFilter(field_name="input_ok")
    #: true: the shadow model's verdict differs from the line's
    shadow_disagrees = django_filters.BooleanFilter(method="f_shadow_disagrees")
    ordering = django_filters.ChoiceFilter(
        choices=[(v, v) for v in ("-created_at", "created_at", "-uncertainty", "uncertainty")],
        method="f_ordering",
    )

    class Meta:
        model = Inspection
        fields = ["verdict", "station", "part_id", "job"]

    def f_misjudged(self, qs, name, value):
        q = review_services.misjudged_q()
        return qs.filter(q) if value else qs.exclude(q)

    def f_shadow_disagrees(self, qs, name, value):
        q = shadow_services.shadow_disagrees_q()
        return qs.filter(q) if value else qs.exclude(q)

    def f_image_kept(self, qs, name, value):
        return qs.exclude(image_file="") if value else qs.filter(image_file="")

    def f_ordering(self, qs, name, value):
        """Newest first by default; ``-uncertainty``: the decisions closest to
        flipping first (the review queue), unmeasured ones last, newest first on ties."""
        from django.db.models import F

        if value == "created_at":
            return qs.order_by("created_at", "id")
        if value == "-created_at":
            return qs.order_by("-created_at", "-id")
        field = F("uncertainty")
        key = field.desc(nulls_last=True) if value.startswith("-") else field.asc(nulls_last=True)
        return qs.order_by(key, "-created_at", "-id")


class InspectionListView(APIView):
    @extend_schema(
        responses={200: s.InspectionOutput(many=True)},
        parameters=[
            OpenApiParameter(n, str)
            for n in ("verdict", "station", "part_id", "job", "created_after", "created_before")
        ]
        + [
            OpenApiParameter(
                "uncertainty_min",
                float,
                description="only decisions with at least this uncertain fraction (0..1)",
            ),
            OpenApiParameter("reviewed", bool, description="only (un)reviewed decisions"),
            OpenApiParameter("review_verdict", str, enum=["OK", "NG"]),
            OpenApiParameter(
                "misjudged", bool, description="only decisions a review found wrong (or right)"
            ),
            OpenApiParameter("image_kept", bool, description="only decisions with a kept image"),
            OpenApiParameter(
                "ordering",
                str,
                enum=["-created_at", "created_at", "-uncertainty", "uncertainty"],
                description="-uncertainty: the review queue, most unsure decisions first",
            ),
        ],
    )
    def get(self, request, pk):
        project, _ = _project(request, pk)
        return _paginate(
            self,
            request,
            _filter(InspectionFilter, request, selectors.inspection_list(project=project)),
            s.InspectionOutput,
        )


EXPORT_COLUMNS = [
    "id",
    "created_at",
    "verdict",
    "severity",
    "station",
    "part_id",
    "image_name",
    "image_sha256",
    "model_number",
    "rules_version",
    "latency_ms",
    "uncertainty",
    "input_ok",
    "input_issues",
    "shadow_model_number",
    "shadow_verdict",
    "n_blobs",
    "review_verdict",
    "review_note",
    "reasons",
]
EXPORT_MAX_ROWS = 100_000


class InspectionExportView(APIView):
    """The log (same filters as the list) as CSV or JSON: ?format=csv|json."""

    @extend_schema(
        responses={(200, "text/csv"): bytes, (200, "application/json"): bytes},
        parameters=[OpenApiParameter("format", str, enum=["csv", "json"])],
    )
    def get(self, request, pk):
        project, _ = _project(request, pk)
        fmt = request.query_params.get("format", "csv")
        if fmt not in ("csv", "json"):
            raise InvalidInput(
                "format must be csv or json", field_errors={"format": ["csv or json"]}
            )
        qs = _filter(InspectionFilter, request, selectors.inspection_list(project=project))[
            :EXPORT_MAX_ROWS
        ]
        rows = []
        for ins in qs:
            review, shadow = ins.review_or_none, ins.shadow_or_none
            rows.append(
                {
                    "id": str(ins.id),
                    "created_at": ins.created_at.isoformat(),
                    "verdict": ins.verdict,
                    "severity": ins.severity,
                    "station": ins.station,
                    "part_id": ins.part_id,
                    "image_name": ins.image_name,
                    "image_sha256": ins.image_sha256,
                    "model_number": ins.model_version.number,
                    "rules_version": ins.ruleset.version,
                    "latency_ms": ins.latency_ms,
                    "uncertainty": ins.uncertainty,
                    "input_ok": "" if ins.input_ok is None and fmt == "csv" else ins.input_ok,
                    "input_issues": "; ".join(
                        i.get("message", "") for i in ins.input_check.get("issues", [])
                    )
                    if fmt == "csv"
                    else ins.input_check.get("issues", []),
                    "shadow_model_number": shadow.model_version.number if shadow else "",
                    "shadow_verdict": shadow.verdict if shadow else "",
                    "n_blobs": len(ins.blobs),
                    "review_verdict": review.verdict if review else "",
                    "review_note": review.note if review else "",
                    "reasons": "; ".join(r.get("message", "") for r in ins.reasons)
                    if fmt == "csv"
                    else ins.reasons,
                }
            )
        filename = f"inspections-{project.id}.{fmt}"
        if fmt == "json":
            response = HttpResponse(json.dumps(rows, indent=1), content_type="application/json")
        else:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS)
            writer.writeheader()
            for row in rows:
                # neutralise spreadsheet formulas in free-text cells
                writer.writerow(
                    {
                        k: (f"'{v}" if isinstance(v, str) and v and v[0] in "=+-@\t\r" else v)
                        for k, v in row.items()
                    }
                )
            response = HttpResponse(buf.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["X-Content-Type-Options"] = "nosniff"
        return response


class InspectionSummaryView(APIView):
    """Counts of the log and of its reviews (the line's real escapes and overkills)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, pk):
        project, _ = _project(request, pk)
        return Response(review_services.inspection_summary(project=project))


class InspectionDetailView(APIView):
    @extend_schema(responses={200: s.InspectionOutput})
    def get(self, request, pk):
        ins = selectors.inspection_get(user=request.user, pk=pk)
        role_require(user=request.user, project=ins.project, need=READ)
        return Response(s.InspectionOutput(ins).data)


class InspectionImageView(APIView):
    #: the browser rendition (what the engine saw) instead of the file as sent
    display = False

    @extend_schema(responses={(200, "image/*"): bytes, 404: _DETAIL})
    def get(self, request, pk):
        ins = selectors.inspection_get(user=request.user, pk=pk)
        role_require(user=request.user, project=ins.project, need=READ)
        if not ins.image_file:
            raise Http404(
                "this inspection kept no image (see the project's keep_inspection_images)"
            )
        name = ins.image_file.name
        if self.display:
            return _display(name, filename=f"inspection-{ins.id}-display.png")
        return _file(
            name,
            download=_download(request),
            filename=f"inspection-{ins.id}.{name.rsplit('.', 1)[-1]}",
        )


class InspectionReviewView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=s.InspectionReviewInput, responses={200: s.InspectionOutput})
    def post(self, request, pk):
        ins = selectors.inspection_get(user=request.user, pk=pk)
        role_require(user=request.user, project=ins.project, need=INSPECT)
        data = s.InspectionReviewInput(data=request.data if isinstance(request.data, dict) else {})
        data.is_valid(raise_exception=True)
        review_services.inspection_review_set(
            inspection=ins, user=request.user, **data.validated_data
        )
        ins = selectors.inspection_get(user=request.user, pk=pk)
        return Response(s.InspectionOutput(ins).data)

    @extend_schema(responses={204: None, 409: _DETAIL})
    def delete(self, request, pk):
        ins = selectors.inspection_get(user=request.user, pk=pk)
        role_require(user=request.user, project=ins.project, need=INSPECT)
        review_services.inspection_review_clear(inspection=ins)
        return Response(status=204)


_PROMOTED = inline_serializer(
    "PromoteResult",
    {
        "image": s.ImageOutput(),
        "created": drf_serializers.BooleanField(),
        "job": s.JobOutput(allow_null=True),
    },
)


class InspectionPromoteView(APIView):
    @extend_schema(request=None, responses={201: _PROMOTED, 200: _PROMOTED, 409: _DETAIL})
    def post(self, request, pk):
        ins = selectors.inspection_get(user=request.user, pk=pk)
        role_require(user=request.user, project=ins.project, need=EDIT)
        result = review_services.inspection_promote(inspection=ins, user=request.user)
        return Response(
            {
                "image": s.ImageOutput(result.image, context={"request": request}).data,
                "created": result.created,
                "job": s.JobOutput(result.job).data if result.job else None,
            },
            status=201 if result.created else 200,
        )


# --- webhooks --------------------------------------------------------------------
class WebhookListView(APIView):
    @extend_schema(responses={200: s.WebhookOutput(many=True)})
    def get(self, request, pk):
        project, _ = _project(request, pk, ADMIN)
        return _paginate(self, request, selectors.webhook_list(project=project), s.WebhookOutput)

    @extend_schema(request=s.WebhookInput, responses={201: s.WebhookCreatedOutput})
    def post(self, request, pk):
        project, _ = _project(request, pk, ADMIN)
        data = s.WebhookInput(data=request.data)
        data.is_valid(raise_exception=True)
        hook = webhook_services.webhook_create(project=project, **data.validated_data)
        return Response(s.WebhookCreatedOutput(hook).data, status=201)


class WebhookDetailView(APIView):
    @extend_schema(responses={200: s.WebhookOutput})
    def get(self, request, pk):
        hook = selectors.webhook_get(user=request.user, pk=pk)
        role_require(user=request.user, project=hook.project, need=ADMIN)
        return Response(s.WebhookOutput(hook).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        hook = selectors.webhook_get(user=request.user, pk=pk)
        role_require(user=request.user, project=hook.project, need=ADMIN)
        webhook_services.webhook_delete(webhook=hook)
        return Response(status=204)


class WebhookDeliveryListView(APIView):
    @extend_schema(responses={200: s.WebhookDeliveryOutput(many=True)})
    def get(self, request, pk):
        hook = selectors.webhook_get(user=request.user, pk=pk)
        role_require(user=request.user, project=hook.project, need=ADMIN)
        return _paginate(
            self, request, hook.deliveries.order_by("-created_at"), s.WebhookDeliveryOutput
        )
