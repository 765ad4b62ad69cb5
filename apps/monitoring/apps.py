from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"

    def ready(self):
        from apps.monitoring import receivers  # noqa: F401 - connects the signal receivers
