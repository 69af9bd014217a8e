from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "inspection.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"
