"""Images and the visual prompts painted on them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from inspection.models.choices import Verdict
from inspection.models.projects import Project


class Image(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    #: server-generated name: projects/<project>/images/<uuid>.<ext>
    file = models.FileField(max_length=300)
    thumbnail = models.FileField(max_length=300, blank=True)
    #: ground-truth mask PNG (0 background, 255 defect), optional
    mask = models.FileField(max_length=300, blank=True)
    sha256 = models.CharField(max_length=64)
    #: engine pixels_hash of the normalised RGB pixels (feature/embedding cache key)
    pixels_hash = models.CharField(max_length=64, blank=True, default="")
    #: client filename, sanitised; metadata only, never used as a path
    original_name = models.CharField(max_length=255, blank=True, default="")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    mode = models.CharField(max_length=16, blank=True, default="")
    format = models.CharField(max_length=16, blank=True, default="")
    bit_depth = models.PositiveSmallIntegerField(default=8)
    size_bytes = models.PositiveIntegerField(default=0)
    #: ground-truth verdict (from the upload or derived from the mask)
    verdict = models.CharField(max_length=2, choices=Verdict.choices, blank=True, default="")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "sha256"], name="image_unique_sha256")
        ]

    def __str__(self) -> str:
        return self.original_name or str(self.id)


class Prompt(models.Model):
    class Kind(models.TextChoices):
        STROKE = "stroke"
        POINT = "point"
        BOX = "box"
        #: a filled region, a label only (a click's or a box's mask accepted)
        POLYGON = "polygon"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="prompts")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    #: class name or "background"
    label = models.CharField(max_length=100)
    #: engine dict form (prompting.prompts.prompt_to_dict)
    data = models.JSONField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    #: soft delete: model versions keep naming the prompts they used
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.label}"
