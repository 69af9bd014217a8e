"""What leaves the product: webhooks and their deliveries, the MQTT outbox."""

from __future__ import annotations

import uuid

from django.db import models

from inspection.models.projects import Project


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
