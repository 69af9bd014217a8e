"""Dashboard pages. Data comes from /api/v1/ in the browser; these only render shells."""

from django.contrib.auth import views as auth_views
from django.urls import path

from inspection.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="dashboard/login.html",
            redirect_authenticated_user=True,
            next_page="dashboard:projects",
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
    path("", views.projects_page, name="projects"),
    path("projects/<uuid:project_id>/", views.overview_page, name="overview"),
    path("projects/<uuid:project_id>/images/<uuid:image_id>/", views.editor_page, name="editor"),
    path("projects/<uuid:project_id>/rules/", views.rules_page, name="rules"),
    path("projects/<uuid:project_id>/models/", views.models_page, name="models"),
    path(
        "projects/<uuid:project_id>/decisions/<uuid:image_id>/",
        views.decision_page,
        name="decision",
    ),
    path(
        "projects/<uuid:project_id>/inspections/<uuid:inspection_id>/",
        views.inspection_decision_page,
        name="inspection_decision",
    ),
    path("projects/<uuid:project_id>/inspections/", views.inspections_page, name="inspections"),
    path("projects/<uuid:project_id>/settings/", views.settings_page, name="settings"),
]
