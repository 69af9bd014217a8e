"""Database models: what the product stores. Only services write them.

Primary keys are UUIDs so ids can't be enumerated across projects. Files live
under ``projects/<project id>/`` in the default storage (see ``storage.py``),
which makes deleting a project and finding orphans a matter of one folder.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import models
from django.db.models import Q

from prompting.inputcheck import DEFAULT_MARGIN


class Role(models.TextChoices):
    OWNER = "owner"
    ENGINEER = "engineer"
    OPERATOR = "operator"
    VIEWER = "viewer"


class Verdict(models.TextChoices):
    OK = "OK"
    NG = "NG"


class KeepImages(models.TextChoices):
    """Which production images an inspection keeps (for review and retraining)."""

    NONE = "none"  # only the decision and the image's sha256
    NG = "ng"  # images judged NG
    UNSURE = "unsure"  # NG, and OK images with uncertainty >= INSPECTION_KEEP_UNSURE_MIN
    ALL = "all"


class InputCheckMode(models.TextChoices):
    """What the input check (is the image taken like the training images?) does."""

    OFF = "off", "Off"
    FLAG = "flag", "Flag (the verdict stands)"  # recorded on the inspection
    NG = "ng", "Judge NG"  # an image unlike the training images is NG (fail-safe)


class DeployedHow(models.TextChoices):
    """How the deployed model came to be deployed."""

    FIRST = "first"  # the project's first model (nothing was deployed)
    AUTO = "auto"  # a Run under auto_deploy, before the first line inspection
    MANUAL = "manual"  # a person pressed Deploy (or kept a previous version)


class Project(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    #: [{"name": "scratch", "colour": "#ff0000"}, ...]
    classes = models.JSONField(default=list)
    cold_start_min = models.PositiveIntegerField(default=10)
    px_per_mm = models.FloatField(null=True, blank=True)
    backend = models.CharField(max_length=50, default="classic")
    #: which images the production inspections keep (KeepImages)
    keep_inspection_images = models.CharField(
        max_length=10, choices=KeepImages.choices, default=KeepImages.NONE
    )
    #: line alert: raised when the NG share of the last ``alert_window`` inspections
    #: reaches this (0..1; null: no alert), cleared when it falls below again
    alert_ng_rate = models.FloatField(null=True, blank=True)
    alert_window = models.PositiveIntegerField(default=50)
    #: whether the line alert is raised now, and since when (or when it was cleared)
    alert_active = models.BooleanField(default=False)
    alert_changed_at = models.DateTimeField(null=True, blank=True)
    #: publish every decision and line alert to the MQTT broker (MQTT_URL; off when unset)
    mqtt_publish = models.BooleanField(default=False)
    #: the input check on inspections (InputCheckMode) and its tolerance: how far
    #: beyond the training images' span (in spreads) a measure may lie
    input_check = models.CharField(
        max_length=4, choices=InputCheckMode.choices, default=InputCheckMode.FLAG
    )
    input_check_margin = models.FloatField(default=DEFAULT_MARGIN)
    deployed_model = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    #: when the deployed model was deployed, and how (DeployedHow)
    deployed_at = models.DateTimeField(null=True, blank=True)
    deployed_how = models.CharField(max_length=10, blank=True, default="")
    #: cold-start convenience: every Run's model is deployed at once, until the
    #: project's first line inspection arrives (then a Run makes a candidate again)
    auto_deploy = models.BooleanField(default=False)
    #: a candidate model that judges every inspection beside the deployed one,
    #: without deciding anything (Inspection.shadow), until it is deployed or stopped
    shadow_model = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    active_ruleset = models.ForeignKey(
        "RuleSet", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.classes]


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.project}"


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


class Job(models.Model):
    class Kind(models.TextChoices):
        EMBED = "embed"
        TRAIN = "train"
        PREDICT = "predict"
        INSPECT_BATCH = "inspect_batch"
        BACKTEST = "backtest"
        TUNE = "tune"

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


class ModelVersion(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    backend = models.CharField(max_length=50)
    backend_fingerprint = models.CharField(max_length=200, blank=True, default="")
    classes = models.JSONField(default=list)
    config = models.JSONField(default=dict, blank=True)
    #: projects/<project>/models/<uuid>.npz, written atomically
    artifact = models.FileField(max_length=300)
    artifact_sha256 = models.CharField(max_length=64, blank=True, default="")
    #: exact training inputs: prompt ids, and [{"id", "sha256"}] of images
    prompt_ids = models.JSONField(default=list)
    images = models.JSONField(default=list)
    #: {"iou", "escape_rate", "overkill_rate", "n_ground_truth", "loo_iou", ...}
    metrics = models.JSONField(default=dict, blank=True)
    pixels_per_class = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    #: set when an engineer kept an earlier version instead (or undid the strokes
    #: that made this one): a dismissed version is never the candidate
    dismissed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="modelversion_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.project} v{self.number}"


class RuleSet(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rulesets")
    version = models.PositiveIntegerField()
    #: engine rule-set JSON, validated by prompting.rules.ruleset_validate
    data = models.JSONField()
    note = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="ruleset_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.project} rules v{self.version}"


class Prediction(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="predictions"
    )
    ruleset = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="predictions")
    verdict = models.CharField(max_length=2, choices=Verdict.choices)
    severity = models.CharField(max_length=10, blank=True, default="")
    reasons = models.JSONField(default=list)
    blobs = models.JSONField(default=list)
    mask = models.FileField(max_length=300)
    overlay = models.FileField(max_length=300)
    #: probabilities, .npz (``prompting.probmaps``: uint8 defect planes); lets backtests re-run rules cheaply
    probabilities = models.FileField(max_length=300)
    #: fraction of inspected pixels near their class threshold (rules' Decision.uncertainty);
    #: null for predictions stored before it was measured
    uncertainty = models.FloatField(null=True, blank=True)
    #: highest anomaly score of the image (1.0 = good parts' level); null when the
    #: model has no memory bank of good parts (the map itself is in ``probabilities``)
    anomaly_peak = models.FloatField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version", "ruleset"], name="prediction_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.image_id} {self.verdict}"


class ImmutableError(Exception):
    """An inspection log row was about to be changed or deleted."""


class Inspection(models.Model):
    """The production log. Written once; never updated, never deleted alone.

    The one exception is retention: a kept image (``image_file``) expires after
    ``INSPECTION_IMAGES_KEEP_DAYS``, and its name is then cleared; the decision stays.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="inspections")
    image_sha256 = models.CharField(max_length=64)
    image_name = models.CharField(max_length=255, blank=True, default="")
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="inspections"
    )
    ruleset = models.ForeignKey(RuleSet, on_delete=models.PROTECT, related_name="inspections")
    verdict = models.CharField(max_length=2, choices=Verdict.choices)
    severity = models.CharField(max_length=10, blank=True, default="")
    reasons = models.JSONField(default=list)
    blobs = models.JSONField(default=list)
    #: as Prediction.uncertainty; null for inspections logged before it was measured
    uncertainty = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField()
    timings = models.JSONField(default=dict, blank=True)
    station = models.CharField(max_length=100, blank=True, default="")
    part_id = models.CharField(max_length=200, blank=True, default="")
    #: the inspected file as sent, when the project keeps it (Project.keep_inspection_images)
    image_file = models.FileField(max_length=300, blank=True, default="")
    #: the input check (prompting.inputcheck.InputCheck.to_dict() plus the mode);
    #: input_ok is null when the image was not checked (mode off, or an older model)
    input_check = models.JSONField(default=dict, blank=True)
    input_ok = models.BooleanField(null=True, blank=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["project", "verdict", "created_at"]),
            # the log and the line alert read a project's newest inspections first
            models.Index(fields=["project", "-created_at"], name="inspection_project_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.verdict} {self.part_id or self.image_sha256[:12]}"

    def _reverse_one(self, name: str):
        try:
            return getattr(self, name)
        except ObjectDoesNotExist:
            return None

    @property
    def shadow_or_none(self) -> ShadowDecision | None:
        """The shadow model's decision on this inspection, None when none (yet)."""
        return self._reverse_one("shadow_decision")

    @property
    def review_or_none(self) -> InspectionReview | None:
        """The person's review of this decision, None when there is none yet."""
        return self._reverse_one("review")

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ImmutableError("inspections are immutable: they can't be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableError("inspections are immutable: they can't be deleted one by one")


class ShadowDecision(models.Model):
    """A shadow model's decision on a logged inspection's image, with the rules the
    line used. Written once by a task after the line got its answer (the line's
    latency does not include it); ``verdict`` is empty and ``error`` set when the
    shadow model failed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    inspection = models.OneToOneField(
        Inspection, on_delete=models.CASCADE, related_name="shadow_decision"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="shadow_decisions"
    )
    verdict = models.CharField(max_length=2, blank=True, default="")
    severity = models.CharField(max_length=10, blank=True, default="")
    reasons = models.JSONField(default=list)
    n_blobs = models.PositiveIntegerField(default=0)
    engine_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def to_dict(self) -> dict:
        out = {
            "model_version": str(self.model_version_id),
            "model_number": self.model_version.number,
            "verdict": self.verdict,
            "severity": self.severity,
            "reasons": self.reasons,
            "n_blobs": self.n_blobs,
            "engine_ms": self.engine_ms,
        }
        return {**out, "error": self.error} if self.error else out


class InspectionReview(models.Model):
    """A person's verdict on a logged inspection (the part as it really is).

    The inspection itself stays immutable; its review can be set again or
    cleared. ``image``: the project image the inspected file became when it
    was added to the training images.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    inspection = models.OneToOneField(Inspection, on_delete=models.CASCADE, related_name="review")
    verdict = models.CharField(max_length=2, choices=Verdict.choices)
    note = models.CharField(max_length=500, blank=True, default="")
    image = models.ForeignKey(
        Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.verdict} (was {self.inspection.verdict})"

    @property
    def misjudged(self) -> bool:
        return self.verdict != self.inspection.verdict


class Webhook(models.Model):
    class Event(models.TextChoices):
        JOB_FINISHED = "job.finished"
        INSPECTION_NG = "inspection.ng"
        #: a person reviewed an inspection (payload says whether it was misjudged)
        INSPECTION_REVIEWED = "inspection.reviewed"
        #: the line's NG rate reached the project's alert level, or fell below it again
        LINE_ALERT = "line.alert"
        #: an inspected image was unlike the model's training images (the input check)
        INSPECTION_INPUT = "inspection.input"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list)
    #: HMAC-SHA256 key; the signature is sent as X-Inspection-Signature: sha256=<hex>
    secret = models.CharField(max_length=128)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=50)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} {self.status}"


class MqttMessage(models.Model):
    """The MQTT outbox: a decision or line alert waiting for (or past) its
    publication. Written beside the inspection, published by ``mqtt_flush``
    (QoS 1) once the broker acknowledges it, so a broker outage leaves a backlog
    that goes out when it returns. ``key`` is unique (``<event>:<inspection
    id>``), so one inspection is never queued, and so never published, twice."""

    id = models.BigAutoField(primary_key=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="mqtt_messages")
    key = models.CharField(max_length=200, unique=True)
    event = models.CharField(max_length=50)
    topic = models.CharField(max_length=500)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    #: a flush that took the message (a random token) and when; a stale claim is taken over
    claim = models.CharField(max_length=40, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    #: when the broker acknowledged it (PUBACK); null: still in the backlog
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["published_at", "id"], name="mqtt_backlog")]

    def __str__(self) -> str:
        return f"{self.key} {'published' if self.published_at else 'pending'}"
