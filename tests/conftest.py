"""Shared fixtures: people with roles, API clients, an isolated media folder, a real Celery worker."""

import os
import shutil

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, what: str) -> None:
    """Skip when a component is missing on a laptop; in CI a missing component is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available here")


def chromium_path() -> str | None:
    return shutil.which("chromium") or (os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium") or None


@pytest.fixture(autouse=True)
def _isolated_media_and_cache(settings, tmp_path):
    """Each test gets its own media folder and an empty cache (deployment state, robot tokens)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRAINING_DIR = tmp_path / "training"
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_user(db, django_user_model):
    """make_user("ann", "annotator") → a user in that role (role None: no role; "admin": superuser)."""

    def _make(username: str, role: str | None = None, password: str = "pw-for-tests-123"):
        if role == "admin":
            return django_user_model.objects.create_superuser(username=username, password=password, email="")
        user = django_user_model.objects.create_user(username=username, password=password)
        if role:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        return user

    return _make


@pytest.fixture
def annotator(make_user):
    return make_user("annotator1", "annotator")


@pytest.fixture
def reviewer(make_user):
    return make_user("reviewer1", "reviewer")


@pytest.fixture
def ml_engineer(make_user):
    return make_user("engineer1", "ml_engineer")


@pytest.fixture
def api_as():
    """api_as(user) → an APIClient authenticated with that person's real API token (None: anonymous)."""

    def _client(user=None):
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return _client


@pytest.fixture
def celery_worker_thread(transactional_db):
    """A real Celery worker consuming from the real broker (Redis/Valkey), in a thread of this process so it
    shares the test database. Serves the default and training queues."""
    from celery.contrib.testing.worker import start_worker

    from vectormlops.celery import app

    app.conf.task_always_eager = False
    with start_worker(
        app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        queues=["default", "training"],
        loglevel="WARNING",
        shutdown_timeout=30,
    ) as worker:
        yield worker
