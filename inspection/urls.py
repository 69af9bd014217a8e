"""Root URLs: the REST API, its schema and docs, health, admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from inspection.api.health import healthz

urlpatterns = [
    path("api/v1/", include("inspection.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("inspection.dashboard.urls")),  # web dashboard
]

handler404 = "inspection.api.errors.not_found"  # JSON under /api/ (unrouted ids, typos)
