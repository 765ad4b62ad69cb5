"""VectorMLOps: a self-hosted MLOps loop for fleets of Anki Vector robots."""

from vectormlops.celery import app as celery_app

__all__ = ["celery_app"]
