"""Django admin for every model. Inspections are read-only here too."""

from django.contrib import admin

from inspection import models


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "backend", "deployed_model", "active_ruleset", "created_at")
    search_fields = ("name",)


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("project", "user", "role", "created_at")
    list_filter = ("role",)


@admin.register(models.Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "original_name", "width", "height", "verdict", "created_at")
    list_filter = ("verdict",)
    search_fields = ("sha256", "original_name")


@admin.register(models.Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("id", "image", "kind", "label", "author", "created_at", "deleted_at")
    list_filter = ("kind",)


@admin.register(models.Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "kind", "state", "progress", "created_at", "finished_at")
    list_filter = ("kind", "state")


@admin.register(models.JobChunk)
class JobChunkAdmin(admin.ModelAdmin):
    list_display = ("job", "index", "state", "done", "attempts", "started_at", "finished_at")
    list_filter = ("state",)
    readonly_fields = [f.name for f in models.JobChunk._meta.fields]


@admin.register(models.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("project", "number", "backend", "created_at")


@admin.register(models.RuleSet)
class RuleSetAdmin(admin.ModelAdmin):
    list_display = ("project", "version", "created_at")


@admin.register(models.Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("image", "model_version", "ruleset", "verdict", "severity", "created_at")
    list_filter = ("verdict",)


@admin.register(models.Inspection)
class InspectionAdmin(admin.ModelAdmin):
    list_display = ("project", "verdict", "severity", "station", "part_id", "created_at")
    list_filter = ("verdict", "station")

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(models.InspectionReview)
class InspectionReviewAdmin(admin.ModelAdmin):
    list_display = ("inspection", "verdict", "reviewed_by", "updated_at")
    list_filter = ("verdict",)


@admin.register(models.ShadowDecision)
class ShadowDecisionAdmin(admin.ModelAdmin):
    list_display = ("inspection", "model_version", "verdict", "error", "created_at")
    list_filter = ("verdict",)

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(models.Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ("project", "url", "active", "created_at")


@admin.register(models.WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("webhook", "event", "status", "attempts", "response_code", "created_at")
    list_filter = ("status",)


@admin.register(models.MqttMessage)
class MqttMessageAdmin(admin.ModelAdmin):
    """The MQTT outbox, read-only: what waits for the broker and what it acknowledged."""

    list_display = ("key", "topic", "event", "created_at", "published_at", "attempts", "last_error")
    list_filter = ("event", ("published_at", admin.EmptyFieldListFilter))
    search_fields = ("key", "topic")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
