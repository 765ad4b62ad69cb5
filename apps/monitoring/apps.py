from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"

    def ready(self):
        from apps.deployments.hooks import install_shadow_field_sums
        from apps.monitoring import receivers  # noqa: F401 - connects the signal receivers
        from apps.monitoring.selectors import shadow_field_sums

        # Deployments' gate and shadow panel ask for a shadow model's field evidence: monitoring aggregates it.
        install_shadow_field_sums(shadow_field_sums)
