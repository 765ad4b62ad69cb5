from django.apps import AppConfig


class VectorMLOpsConfig(AppConfig):
    """The project itself: roles, home page, health, shared API plumbing."""

    name = "vectormlops"
    verbose_name = "VectorMLOps"
