from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The signed-in pages that show several apps' data. It imports the apps below it, never the
    reverse: dashboard -> generation -> accounts -> billing -> config."""

    name = "dashboard"
