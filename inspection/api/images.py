"""A project's images: upload, list, ground truth, and their files."""

from __future__ import annotations

from uuid import UUID

from django.http import Http404, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inspection import selectors
from inspection.api import serializers as s
from inspection.api.base import download_wanted, filtered, paginate, project_for, row_for
from inspection.api.files import display_response, file_response
from inspection.api.filters import ImageFilter
from inspection.api.permissions import EDIT, READ
from inspection.services import images as image_services


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
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk)
        qs = filtered(ImageFilter, request, selectors.image_list(project=project))
        response = paginate(self, request, qs, s.ImageOutput)
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
    def post(self, request: Request, pk: UUID) -> HttpResponse:
        project, _ = project_for(request, pk, EDIT)
        data = s.ImageUploadInput(data=request.data)
        data.is_valid(raise_exception=True)
        results = image_services.images_upload(
            project=project,
            files=data.validated_data["files"],
            masks=data.validated_data["masks"],
            verdict=data.validated_data["verdict"],
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


class ImageDetailView(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(responses={200: s.ImageOutput})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        image = row_for(request, selectors.image_get, pk, READ)
        return Response(s.ImageOutput(image, context={"request": request}).data)

    @extend_schema(
        request={"multipart/form-data": s.ImagePatchInput, "application/json": s.ImagePatchInput},
        responses={200: s.ImageOutput},
    )
    def patch(self, request: Request, pk: UUID) -> HttpResponse:
        image = row_for(request, selectors.image_get, pk, EDIT)
        data = s.ImagePatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        mask = data.validated_data.get("mask")
        image = image_services.image_ground_truth_set(
            image=image,
            verdict=data.validated_data.get("verdict"),
            mask=s.upload_read(mask, "mask") if mask else None,
            clear_mask=data.validated_data.get("clear_mask", False),
        )
        return Response(s.ImageOutput(image, context={"request": request}).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: UUID) -> HttpResponse:
        image = row_for(request, selectors.image_get, pk, EDIT)
        image_services.image_delete(image=image)
        return Response(status=204)


class ImageFileView(APIView):
    kind = "file"

    @extend_schema(responses={(200, "image/*"): bytes})
    def get(self, request: Request, pk: UUID) -> HttpResponse:
        image = row_for(request, selectors.image_get, pk, READ)
        if self.kind == "display":
            return display_response(image.file.name, filename=f"{image.id}-display.png")
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
        return file_response(
            name, download=download_wanted(request), filename=f"{image.id}-{self.kind}.{ext}"
        )
