"""The Celery application: tasks are discovered in each app's tasks.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vectormlops.settings")

app = Celery("vectormlops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="vectormlops.ping_task")
def ping_task(value):
    """Echo, for health checks and the worker round-trip test."""
    return value
