"""Jobs (the truth of every background task) and the chunks a job fans out into."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from inspection.models.images import Image
from inspection.models.projects import Project


class Job(models.Model):
    class Kind(models.TextChoices):
        EMBED = "embed"
        TRAIN = "train"
        PREDICT = "predict"
        INSPECT_BATCH = "inspect_batch"
        BACKTEST = "backtest"
        TUNE = "tune"
        PREPARE = "prepare"

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE_STATES = (State.QUEUED, State.RUNNING)
    FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    #: the image an embed job computes
    image = models.ForeignKey(
        Image, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True, default="")
    error = models.TextField(blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    celery_task_id = models.CharField(max_length=100, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # the database itself refuses a second active training run per project
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(kind="train", state__in=["queued", "running"]),
                name="job_one_active_train_per_project",
            ),
            models.UniqueConstraint(
                fields=["image"],
                condition=Q(kind="embed", state__in=["queued", "running"]),
                name="job_one_active_embed_per_image",
            ),
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.state} {self.id}"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES


class JobChunk(models.Model):
    """One slice of a fanned-out job (propagation, batch inspection): a Celery task
    runs it on whichever worker is free. The parent Job stays the truth: its
    progress and result aggregate its chunks, and it ends when the last one does.

    ``items``: what the chunk works on (image ids; batch item indices). ``done``:
    how many of them are finished, so a chunk re-run after a lost worker resumes.
    """

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    items = models.JSONField(default=list)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    done = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="jobchunk_unique_index"),
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"chunk {self.index} of {self.job_id} ({self.state})"
