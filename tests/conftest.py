"""Shared fixtures: people with roles, API clients, an isolated media folder, a real Celery worker."""

import os
import socket

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from rest_framework.test import APIClient

from vectormlops.services import api_token_create

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, what: str) -> None:
    """Skip when a component is missing on a laptop; in CI a missing component is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available here")


CHROMIUM = "/usr/bin/chromium"  # Debian's package; never `playwright install`
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",  # the machine has no internet: no background connections at all
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TEST_PASSWORD = "pw-for-tests-123"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for servers a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """The URL of the test database, for processes (workers, servers) a test starts."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


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

    def _make(username: str, role: str | None = None, password: str = TEST_PASSWORD):
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

    keys = {}  # one token per person per test, like a script that keeps its key

    def _client(user=None):
        client = APIClient()
        if user is not None:
            if user.pk not in keys:
                keys[user.pk] = api_token_create(user=user, expires_in=None)[1]
            client.credentials(HTTP_AUTHORIZATION=f"Token {keys[user.pk]}")
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


@pytest.fixture
def open_browser(monkeypatch):
    """open_browser() → a Playwright page in headless Chromium; call it after creating test data (Playwright runs
    an event loop in this thread, and broadcasting from inside one is refused). Each call is a fresh context (its
    own cookies, like a new window) in the one Chromium of this test. ``page.js_errors`` collects page errors and
    5xx responses."""
    require(os.path.exists(CHROMIUM), "chromium")
    started = []

    def _open():
        if not started:
            # The test still talks to the ORM synchronously while Playwright's loop exists in this thread.
            monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
            from playwright.sync_api import sync_playwright

            playwright = sync_playwright().start()
            started.append(
                (playwright, playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS))
            )
        page = started[0][1].new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.set_default_timeout(60_000)  # two shared cores: a busy machine must not fail the test
        page.js_errors = []
        page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
        page.on("response", lambda r: r.status >= 500 and page.js_errors.append(f"{r.status} {r.url}"))
        return page

    yield _open
    if started:
        # With Playwright's loop in this thread, Django keeps this test's ORM connection in loop-local storage;
        # close it here, or PostgreSQL refuses to drop the test database at the end of the session.
        from django.db import connections

        connections.close_all()
    for playwright, browser in started:
        browser.close()
        playwright.stop()


def log_in(page, live_server, username: str, password: str = TEST_PASSWORD) -> None:
    """Sign in through the real login form."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state("networkidle")


@pytest.fixture
def vector_home(tmp_path, monkeypatch):
    """A home folder of its own: the Vector SDK reads ``$HOME/.anki_vector/sdk_config.ini``."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def virtual_vector(vector_home):
    """A running virtual Vector (serial 00000001) whose SDK configuration is in ``vector_home``."""
    from vectorsim.server import VirtualVector

    vector = VirtualVector("00000001", home=vector_home).start()
    yield vector
    vector.stop()
