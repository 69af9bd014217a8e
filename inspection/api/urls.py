"""/api/v1/ routes (the REST contract of the service issue)."""

from django.urls import path

from inspection.api import (
    auth,
    images,
    inspections,
    interchange,
    jobs,
    lifecycle,
    models,
    predictions,
    projects,
    prompts,
    rules,
    webhooks,
)

urlpatterns = [
    path("auth/token/", auth.TokenView.as_view(), name="auth-token"),
    path("auth/session/", auth.SessionView.as_view(), name="auth-session"),
    path("auth/me/", auth.MeView.as_view(), name="auth-me"),
    path("projects/", projects.ProjectListView.as_view(), name="project-list"),
    path("rules/vocabulary/", rules.RuleVocabularyView.as_view(), name="rule-vocabulary"),
    path(
        "projects/<uuid:pk>/export/coco/", interchange.CocoExportView.as_view(), name="export-coco"
    ),
    path(
        "projects/<uuid:pk>/export/labelstudio/",
        interchange.LabelStudioExportView.as_view(),
        name="export-labelstudio",
    ),
    path(
        "projects/<uuid:pk>/export/masks/",
        interchange.MasksExportView.as_view(),
        name="export-masks",
    ),
    path(
        "projects/<uuid:pk>/import/coco/", interchange.CocoImportView.as_view(), name="import-coco"
    ),
    path(
        "projects/<uuid:pk>/import/labelstudio/",
        interchange.LabelStudioImportView.as_view(),
        name="import-labelstudio",
    ),
    path("projects/<uuid:pk>/", projects.ProjectDetailView.as_view(), name="project-detail"),
    path("projects/<uuid:pk>/members/", projects.MemberListView.as_view(), name="project-members"),
    path(
        "projects/<uuid:pk>/members/<int:user_id>/",
        projects.MemberDetailView.as_view(),
        name="project-member",
    ),
    path("projects/<uuid:pk>/images/", images.ImageListView.as_view(), name="project-images"),
    path("projects/<uuid:pk>/train/", models.TrainView.as_view(), name="project-train"),
    path(
        "projects/<uuid:pk>/candidate/",
        lifecycle.ProjectCandidateView.as_view(),
        name="project-candidate",
    ),
    path(
        "projects/<uuid:pk>/next-step/",
        lifecycle.ProjectNextStepView.as_view(),
        name="project-next-step",
    ),
    path("projects/<uuid:pk>/jobs/", jobs.ProjectJobListView.as_view(), name="project-jobs"),
    path("projects/<uuid:pk>/models/", models.ModelListView.as_view(), name="project-models"),
    path("projects/<uuid:pk>/rules/", rules.RulesView.as_view(), name="project-rules"),
    path(
        "projects/<uuid:pk>/rules/versions/",
        rules.RuleVersionListView.as_view(),
        name="project-rule-versions",
    ),
    path(
        "projects/<uuid:pk>/rules/backtest/",
        rules.BacktestView.as_view(),
        name="project-rules-backtest",
    ),
    path("projects/<uuid:pk>/rules/tune/", rules.TuneView.as_view(), name="project-rules-tune"),
    path(
        "projects/<uuid:pk>/predictions/",
        predictions.PredictionListView.as_view(),
        name="project-predictions",
    ),
    path("projects/<uuid:pk>/inspect/", inspections.InspectView.as_view(), name="project-inspect"),
    path(
        "projects/<uuid:pk>/inspections/",
        inspections.InspectionListView.as_view(),
        name="project-inspections",
    ),
    path(
        "projects/<uuid:pk>/inspections/summary/",
        inspections.InspectionSummaryView.as_view(),
        name="project-inspections-summary",
    ),
    path(
        "projects/<uuid:pk>/inspections/export/",
        inspections.InspectionExportView.as_view(),
        name="project-inspections-export",
    ),
    path(
        "projects/<uuid:pk>/webhooks/", webhooks.WebhookListView.as_view(), name="project-webhooks"
    ),
    path("images/<uuid:pk>/", images.ImageDetailView.as_view(), name="image-detail"),
    path("images/<uuid:pk>/file/", images.ImageFileView.as_view(kind="file"), name="image-file"),
    path(
        "images/<uuid:pk>/display/",
        images.ImageFileView.as_view(kind="display"),
        name="image-display",
    ),
    path(
        "images/<uuid:pk>/thumbnail/",
        images.ImageFileView.as_view(kind="thumbnail"),
        name="image-thumbnail",
    ),
    path("images/<uuid:pk>/mask/", images.ImageFileView.as_view(kind="mask"), name="image-mask"),
    path(
        "images/<uuid:pk>/overlay/",
        images.ImageFileView.as_view(kind="overlay"),
        name="image-overlay",
    ),
    path("images/<uuid:pk>/prompts/", prompts.PromptListView.as_view(), name="image-prompts"),
    path("images/<uuid:pk>/segment/", prompts.SegmentView.as_view(), name="image-segment"),
    path(
        "images/<uuid:pk>/segment/prepare/",
        prompts.SegmentPrepareView.as_view(),
        name="image-segment-prepare",
    ),
    path("prompts/<uuid:pk>/", prompts.PromptDetailView.as_view(), name="prompt-detail"),
    path("jobs/<uuid:pk>/", jobs.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:pk>/cancel/", jobs.JobCancelView.as_view(), name="job-cancel"),
    path(
        "jobs/<uuid:pk>/predictions/", jobs.JobPredictionListView.as_view(), name="job-predictions"
    ),
    path("models/<uuid:pk>/", models.ModelDetailView.as_view(), name="model-detail"),
    path("models/<uuid:pk>/deploy/", models.ModelDeployView.as_view(), name="model-deploy"),
    path("models/<uuid:pk>/bundle/", models.ModelBundleView.as_view(), name="model-bundle"),
    path("models/<uuid:pk>/shadow/", models.ModelShadowView.as_view(), name="model-shadow"),
    path(
        "models/<uuid:pk>/comparison/",
        lifecycle.ModelComparisonView.as_view(),
        name="model-comparison",
    ),
    path("models/<uuid:pk>/dismiss/", lifecycle.ModelDismissView.as_view(), name="model-dismiss"),
    path(
        "models/<uuid:pk>/undo-strokes/",
        lifecycle.ModelUndoStrokesView.as_view(),
        name="model-undo-strokes",
    ),
    path(
        "predictions/<uuid:pk>/mask/",
        predictions.PredictionFileView.as_view(kind="mask"),
        name="prediction-mask",
    ),
    path(
        "predictions/<uuid:pk>/overlay/",
        predictions.PredictionFileView.as_view(kind="overlay"),
        name="prediction-overlay",
    ),
    path(
        "predictions/<uuid:pk>/anomaly/",
        predictions.PredictionAnomalyView.as_view(),
        name="prediction-anomaly",
    ),
    path(
        "inspections/<uuid:pk>/",
        inspections.InspectionDetailView.as_view(),
        name="inspection-detail",
    ),
    path(
        "inspections/<uuid:pk>/image/",
        inspections.InspectionImageView.as_view(),
        name="inspection-image",
    ),
    path(
        "inspections/<uuid:pk>/image/display/",
        inspections.InspectionImageView.as_view(display=True),
        name="inspection-image-display",
    ),
    path(
        "inspections/<uuid:pk>/masks/",
        inspections.InspectionMasksView.as_view(),
        name="inspection-masks",
    ),
    path(
        "inspections/<uuid:pk>/review/",
        inspections.InspectionReviewView.as_view(),
        name="inspection-review",
    ),
    path(
        "inspections/<uuid:pk>/promote/",
        inspections.InspectionPromoteView.as_view(),
        name="inspection-promote",
    ),
    path("webhooks/<uuid:pk>/", webhooks.WebhookDetailView.as_view(), name="webhook-detail"),
    path(
        "webhooks/<uuid:pk>/deliveries/",
        webhooks.WebhookDeliveryListView.as_view(),
        name="webhook-deliveries",
    ),
]
