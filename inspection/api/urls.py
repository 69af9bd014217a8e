"""/api/v1/ routes (the REST contract of the service issue)."""

from django.urls import path

from inspection.api import lifecycle as lc
from inspection.api import rules
from inspection.api import views as v

urlpatterns = [
    path("auth/token/", v.TokenView.as_view(), name="auth-token"),
    path("auth/session/", v.SessionView.as_view(), name="auth-session"),
    path("auth/me/", v.MeView.as_view(), name="auth-me"),
    path("projects/", v.ProjectListView.as_view(), name="project-list"),
    path("rules/vocabulary/", rules.RuleVocabularyView.as_view(), name="rule-vocabulary"),
    path("projects/<uuid:pk>/", v.ProjectDetailView.as_view(), name="project-detail"),
    path("projects/<uuid:pk>/members/", v.MemberListView.as_view(), name="project-members"),
    path(
        "projects/<uuid:pk>/members/<int:user_id>/",
        v.MemberDetailView.as_view(),
        name="project-member",
    ),
    path("projects/<uuid:pk>/images/", v.ImageListView.as_view(), name="project-images"),
    path("projects/<uuid:pk>/train/", v.TrainView.as_view(), name="project-train"),
    path(
        "projects/<uuid:pk>/candidate/", lc.ProjectCandidateView.as_view(), name="project-candidate"
    ),
    path(
        "projects/<uuid:pk>/next-step/", lc.ProjectNextStepView.as_view(), name="project-next-step"
    ),
    path("projects/<uuid:pk>/jobs/", v.ProjectJobListView.as_view(), name="project-jobs"),
    path("projects/<uuid:pk>/models/", v.ModelListView.as_view(), name="project-models"),
    path("projects/<uuid:pk>/rules/", v.RulesView.as_view(), name="project-rules"),
    path(
        "projects/<uuid:pk>/rules/versions/",
        v.RuleVersionListView.as_view(),
        name="project-rule-versions",
    ),
    path(
        "projects/<uuid:pk>/rules/backtest/",
        v.BacktestView.as_view(),
        name="project-rules-backtest",
    ),
    path("projects/<uuid:pk>/rules/tune/", v.TuneView.as_view(), name="project-rules-tune"),
    path(
        "projects/<uuid:pk>/predictions/",
        v.PredictionListView.as_view(),
        name="project-predictions",
    ),
    path("projects/<uuid:pk>/inspect/", v.InspectView.as_view(), name="project-inspect"),
    path(
        "projects/<uuid:pk>/inspections/",
        v.InspectionListView.as_view(),
        name="project-inspections",
    ),
    path(
        "projects/<uuid:pk>/inspections/summary/",
        v.InspectionSummaryView.as_view(),
        name="project-inspections-summary",
    ),
    path(
        "projects/<uuid:pk>/inspections/export/",
        v.InspectionExportView.as_view(),
        name="project-inspections-export",
    ),
    path("projects/<uuid:pk>/webhooks/", v.WebhookListView.as_view(), name="project-webhooks"),
    path("images/<uuid:pk>/", v.ImageDetailView.as_view(), name="image-detail"),
    path("images/<uuid:pk>/file/", v.ImageFileView.as_view(kind="file"), name="image-file"),
    path(
        "images/<uuid:pk>/display/", v.ImageFileView.as_view(kind="display"), name="image-display"
    ),
    path(
        "images/<uuid:pk>/thumbnail/",
        v.ImageFileView.as_view(kind="thumbnail"),
        name="image-thumbnail",
    ),
    path("images/<uuid:pk>/mask/", v.ImageFileView.as_view(kind="mask"), name="image-mask"),
    path(
        "images/<uuid:pk>/overlay/", v.ImageFileView.as_view(kind="overlay"), name="image-overlay"
    ),
    path("images/<uuid:pk>/prompts/", v.PromptListView.as_view(), name="image-prompts"),
    path("images/<uuid:pk>/segment/", v.SegmentView.as_view(), name="image-segment"),
    path("prompts/<uuid:pk>/", v.PromptDetailView.as_view(), name="prompt-detail"),
    path("jobs/<uuid:pk>/", v.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:pk>/cancel/", v.JobCancelView.as_view(), name="job-cancel"),
    path("models/<uuid:pk>/", v.ModelDetailView.as_view(), name="model-detail"),
    path("models/<uuid:pk>/deploy/", v.ModelDeployView.as_view(), name="model-deploy"),
    path("models/<uuid:pk>/bundle/", v.ModelBundleView.as_view(), name="model-bundle"),
    path("models/<uuid:pk>/shadow/", v.ModelShadowView.as_view(), name="model-shadow"),
    path("models/<uuid:pk>/comparison/", lc.ModelComparisonView.as_view(), name="model-comparison"),
    path("models/<uuid:pk>/dismiss/", lc.ModelDismissView.as_view(), name="model-dismiss"),
    path(
        "models/<uuid:pk>/undo-strokes/",
        lc.ModelUndoStrokesView.as_view(),
        name="model-undo-strokes",
    ),
    path(
        "predictions/<uuid:pk>/mask/",
        v.PredictionFileView.as_view(kind="mask"),
        name="prediction-mask",
    ),
    path(
        "predictions/<uuid:pk>/overlay/",
        v.PredictionFileView.as_view(kind="overlay"),
        name="prediction-overlay",
    ),
    path("inspections/<uuid:pk>/", v.InspectionDetailView.as_view(), name="inspection-detail"),
    path("inspections/<uuid:pk>/image/", v.InspectionImageView.as_view(), name="inspection-image"),
    path(
        "inspections/<uuid:pk>/image/display/",
        v.InspectionImageView.as_view(display=True),
        name="inspection-image-display",
    ),
    path(
        "inspections/<uuid:pk>/review/", v.InspectionReviewView.as_view(), name="inspection-review"
    ),
    path(
        "inspections/<uuid:pk>/promote/",
        v.InspectionPromoteView.as_view(),
        name="inspection-promote",
    ),
    path("webhooks/<uuid:pk>/", v.WebhookDetailView.as_view(), name="webhook-detail"),
    path(
        "webhooks/<uuid:pk>/deliveries/",
        v.WebhookDeliveryListView.as_view(),
        name="webhook-deliveries",
    ),
]
