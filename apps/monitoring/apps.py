from urllib.parse import urlencode

from django.apps import AppConfig
from django.urls import reverse


def dataset_links(slug: str, *, robot: str | None = None) -> list[tuple[str, str]]:
    """Monitoring's page of a dataset (for one robot, when given): deployments' answer to ``hooks.dataset_links``."""
    url = reverse("monitoring:dataset", args=[slug])
    return [("Monitoring", f"{url}?{urlencode({'robot': robot})}" if robot else url)]


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"

    def ready(self):
        from apps.deployments.hooks import install_dataset_links, install_shadow_field_sums
        from apps.monitoring import receivers  # noqa: F401 - connects the signal receivers
        from apps.monitoring.selectors import shadow_field_sums

        # Deployments' gate and shadow panel ask for a shadow model's field evidence: monitoring aggregates it.
        install_shadow_field_sums(shadow_field_sums)
        # Deployments' pages link to how a dataset's models do in the field without naming monitoring's URLs.
        install_dataset_links(dataset_links)
