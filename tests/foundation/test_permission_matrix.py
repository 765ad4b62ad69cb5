"""The permission matrix: every URL pattern of the project, for every kind of caller.

The routes come from the URL resolver, so a new route that is missing from MATRIX fails the suite (and an entry
whose route is gone fails too). Each route is called with each method it declares by anonymous, annotator,
reviewer, ml_engineer, admin (superuser) and a robot token; any 5xx fails.

Expected answers, when the role is not allowed: the API says 401 (anonymous) or 403 ``permission_denied``; pages
send anonymous callers and robots (who have no session) to the login form and answer 403 to people without the
role; the admin sends everyone but superusers to its own login form (superusers may still get a 403 where a ModelAdmin
allows no adding or deleting).
"""

import re

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver

from apps.deployments import services as deployment_services
from apps.monitoring.services import alert_raise
from apps.training.models import TrainingRun
from tests.builders import dataset_row, make_model, make_robot, stored_image_row

ROLES = ("anonymous", "annotator", "reviewer", "ml_engineer", "admin", "robot")
ANYONE = "anyone"  # no role check (the answer may still be 4xx for what was sent)
PERSON = {"annotator", "reviewer", "ml_engineer", "admin"}
ANNOTATOR = PERSON
REVIEWER = {"reviewer", "ml_engineer", "admin"}
ENGINEER = {"ml_engineer", "admin"}
ROBOT = {"robot"}

# route (as the resolver spells it) → {method: who may call}, optionally with values for its URL parameters.
MATRIX = {
    # project
    "": {"get": PERSON},
    "healthz": {"get": ANYONE},
    "favicon.ico": {"get": ANYONE},
    "api/schema/": {"get": ANYONE},
    "api/docs/": {"get": ANYONE},
    "^api/": {"get": ANYONE, "post": ANYONE},
    "accounts/login/": {"get": ANYONE},
    "accounts/logout/": {"post": ANYONE},
    "accounts/password_change/": {"get": PERSON},
    "accounts/password_change/done/": {"get": PERSON},
    "accounts/password_reset/": {"get": ANYONE},
    "accounts/password_reset/done/": {"get": ANYONE},
    "accounts/reset/<uidb64>/<token>/": {"get": ANYONE},
    "accounts/reset/done/": {"get": ANYONE},
    # datasets
    "api/v1/images": {"get": ANNOTATOR, "post": ROBOT | ANNOTATOR},
    "api/v1/datasets": {"get": ANNOTATOR, "post": ENGINEER},
    "api/v1/datasets/<slug:slug>/versions": {"get": ANNOTATOR, "post": ENGINEER},
    "api/v1/datasets/<slug:slug>/imports": {"post": ENGINEER},
    "api/v1/imports/<int:pk>": {"get": ENGINEER},
    "api/v1/imports/<int:pk>/rollback": {"post": ENGINEER},
    "datasets/": {"get": ANNOTATOR},
    "datasets/new": {"post": ENGINEER},
    "datasets/images/<int:image_id>/file": {"get": ANNOTATOR},
    "datasets/images/<int:image_id>/thumb": {"get": ANNOTATOR},
    "datasets/<slug:slug>/": {"get": ANNOTATOR},
    "datasets/<slug:slug>/versions/freeze": {"post": ENGINEER},
    "datasets/<slug:slug>/classes": {"post": ENGINEER},
    "datasets/<slug:slug>/overview": {"get": ANNOTATOR},
    "datasets/<slug:slug>/image": {"get": ANNOTATOR},
    "datasets/<slug:slug>/versions/<int:number>/diff": {"get": ANNOTATOR},
    "datasets/<slug:slug>/versions/<int:number>/export.<str:fmt>": {"get": ENGINEER},
    "datasets/<slug:slug>/import": {"post": ENGINEER},
    "datasets/<slug:slug>/imports/<int:job_id>/": {"get": ENGINEER},
    "datasets/<slug:slug>/imports/<int:job_id>/rollback": {"post": ENGINEER},
    # labeling
    "api/v1/images/<int:image_id>/annotations": {"get": ANNOTATOR, "put": ANNOTATOR},
    "api/v1/images/<int:image_id>/review": {"post": REVIEWER},
    "api/v1/labeling/datasets/<slug:slug>/next": {"post": ANNOTATOR},
    "api/v1/labeling/datasets/<slug:slug>/queue": {"get": ANNOTATOR},
    "api/v1/labeling/datasets/<slug:slug>/review-queue": {"get": REVIEWER},
    "api/v1/labeling/images/<int:image_id>": {"get": ANNOTATOR, "post": ANNOTATOR},
    "api/v1/labeling/images/<int:image_id>/release": {"post": ANNOTATOR},
    "api/v1/labeling/images/<int:image_id>/skip": {"post": ANNOTATOR},
    "api/v1/labeling/images/<int:image_id>/draft": {"get": ANNOTATOR, "put": ANNOTATOR, "delete": ANNOTATOR},
    "api/v1/labeling/claims/renew": {"post": ANNOTATOR},
    "api/v1/labeling/stats": {"get": REVIEWER},
    "api/v1/labeling/datasets/<slug:slug>/review-batch": {"post": REVIEWER},
    "api/v1/labeling/images/<int:image_id>/suspect": {"post": REVIEWER},
    "label/": {"get": ANNOTATOR},
    "label/<slug:slug>/": {"get": ANNOTATOR},
    "review/": {"get": REVIEWER},
    "review/<slug:slug>/": {"get": REVIEWER},
    "review/<slug:slug>/suspects/": {"get": REVIEWER},
    "labeling/stats/": {"get": REVIEWER},
    # training
    "api/v1/training-runs": {"post": ENGINEER},
    "api/v1/training-runs/<int:run_id>": {"get": ENGINEER},
    "api/v1/training-runs/<int:run_id>/cancel": {"post": ENGINEER},
    "training/runs/": {"get": ENGINEER},
    "training/runs/new/": {"get": ENGINEER, "post": ENGINEER},
    "training/runs/<int:run_id>/": {"get": ENGINEER},
    "training/runs/<int:run_id>/cancel/": {"post": ENGINEER},
    "training/runs/compare/": {"get": ENGINEER},
    "training/base-models/": {"get": ENGINEER, "post": ENGINEER},
    "training/retraining/": {"get": ENGINEER, "post": ENGINEER},
    "training/retraining/<slug:slug>/": {"get": ENGINEER, "post": ENGINEER},
    "api/v1/training/bases": {"get": ENGINEER},
    "api/v1/training/base-models": {"get": ENGINEER, "post": ENGINEER},
    # deployments
    "api/v1/robots/enroll": {"post": ANYONE},
    "api/v1/robot/model": {"get": ROBOT},
    "api/v1/robot/ping": {"get": ANYONE},
    "api/v1/telemetry": {"post": ROBOT},
    "api/v1/models": {"get": ENGINEER},
    "api/v1/models/<int:pk>": {"get": ENGINEER},
    "api/v1/models/<int:model_id>/promote": {"post": ENGINEER},
    "api/v1/models/<int:model_id>/artifacts/<str:fmt>": {"get": ROBOT | ENGINEER},
    "api/v1/datasets/<slug:slug>/rollback": {"post": ENGINEER},
    "api/v1/datasets/<slug:slug>/deployments": {"get": ENGINEER},
    "deployments/": {"get": ENGINEER},
    "deployments/<slug:slug>/": {"get": ENGINEER},
    "deployments/<slug:slug>/rollback/": {"get": ENGINEER, "post": ENGINEER},
    "deployments/<slug:slug>/canary/end/": {"get": ENGINEER, "post": ENGINEER},
    "deployments/<slug:slug>/shadow/end/": {"get": ENGINEER, "post": ENGINEER},
    "models/": {"get": ENGINEER},
    "models/<int:model_id>/promote/": {"get": ENGINEER, "post": ENGINEER},
    "models/<int:model_id>/shadow/": {"get": ENGINEER, "post": ENGINEER},
    "models/<int:model_id>/errors/": {"get": ENGINEER},
    "models/<int:model_id>/": {"get": ENGINEER},
    # monitoring
    "api/v1/alerts/<int:alert_id>/acknowledge": {"post": ENGINEER},
    "api/v1/datasets/<slug:slug>/alerts": {"get": ENGINEER},
    "api/v1/datasets/<slug:slug>/field-metrics": {"get": ENGINEER},
    "monitoring/": {"get": ENGINEER},
    "monitoring/alerts/<int:alert_id>/": {"get": ENGINEER},
    "monitoring/alerts/<int:alert_id>/fragment": {"get": ENGINEER},
    "monitoring/alerts/<int:alert_id>/acknowledge": {"post": ENGINEER},
    "monitoring/<slug:slug>/": {"get": ENGINEER},
}
# Every admin route (models registered by each app, the index, history): superusers only; its login and logout
# forms are open.
ADMIN_PREFIX = "admin/"
ADMIN_OPEN = {"admin/login/", "admin/logout/"}
ADMIN_VALUES = {"object_id": "1", "id": "1", "app_label": "auth", "content_type_id": "1", "url": "nowhere/"}
# Parameters that name something that does not exist: the answer is a 404 for those allowed.
MISSING = {"pk": 999_999, "job_id": 999_999, "number": 999_999, "uidb64": "MQ", "token": "set-password"}


def _routes(patterns=None, prefix=""):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern)


ROUTES = list(dict.fromkeys(_routes()))
PROJECT_ROUTES = [r for r in ROUTES if not r.startswith(ADMIN_PREFIX)]
ADMIN_ROUTES = [r for r in ROUTES if r.startswith(ADMIN_PREFIX)]

_PARAM = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>[^)]*\)")


def _url(route: str, values: dict) -> str:
    """The route with its parameters filled in (path converters and admin's regex groups alike)."""
    if route == "^api/":
        return "/api/v1/no-such-route"
    filled = _PARAM.sub(lambda m: str(values[m.group(1) or m.group(2)]), route)
    return "/" + filled.lstrip("^").rstrip("$").replace("\\", "")


@pytest.fixture
def world(db, settings, make_user, api_as, monkeypatch):
    """One of everything the routes name, and a client per role (API: tokens; pages: sessions)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # many users, quickly
    # The staff view of /healthz pings Celery; whether a worker runs is not what this test is about.
    monkeypatch.setattr("vectormlops.views._check_celery", lambda: "ok (not pinged in this test)")
    dataset = dataset_row()
    model = make_model(dataset, 1)
    deployment_services.model_promote(model=model, channel="production", reason="first")
    image = stored_image_row(dataset, seed=1)
    _, token = make_robot()
    run = TrainingRun.objects.create(dataset=dataset, status=TrainingRun.Status.SUCCEEDED)
    alert, _ = alert_raise(dataset=dataset, kind="drift", message="test")
    values = {
        "slug": dataset.slug,
        "image_id": image.pk,
        "model_id": model.pk,
        "run_id": run.pk,
        "alert_id": alert.pk,
        "fmt": "onnx",
        **MISSING,
        **ADMIN_VALUES,
    }
    api = {"anonymous": api_as(None), "robot": api_as(None)}
    api["robot"].credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    pages = {"anonymous": Client(), "robot": Client(HTTP_AUTHORIZATION=f"Bearer {token}")}
    for role in ("annotator", "reviewer", "ml_engineer", "admin"):
        user = make_user(f"matrix-{role}", role)
        api[role] = api_as(user)
        pages[role] = Client()
        pages[role].force_login(user)
    return {"values": values, "api": api, "pages": pages, "model": model}


def _call(client, method: str, url: str):
    if method == "get":
        return client.get(url)
    if url.startswith("/api/"):
        return getattr(client, method)(url, {}, format="json")
    return getattr(client, method)(url, {})


def _check(kind: str, role: str, allowed, response, where: str) -> None:
    code = response.status_code
    assert code < 500, f"{where} as {role}: {code} {response.content[:300]!r}"
    if allowed == ANYONE:
        return
    login = "/admin/login/" if kind == "admin" else "/accounts/login/"
    if role in allowed:
        # A superuser may still meet a 403 in the admin where a ModelAdmin allows no adding or deleting.
        assert kind == "admin" or code not in (401, 403), f"{where} as {role} (allowed): {code}"
        assert not (code == 302 and response["Location"].startswith(login)), f"{where} as {role} (allowed): login"
    elif kind == "api":
        expected = 401 if role == "anonymous" else 403
        assert code == expected, f"{where} as {role}: {code}, expected {expected}"
        codes = ("not_authenticated", "authentication_failed") if expected == 401 else ("permission_denied",)
        assert response.json()["error"]["code"] in codes, f"{where} as {role}: {response.json()}"
    elif kind == "admin" or role in ("anonymous", "robot"):
        assert code == 302 and response["Location"].startswith(login), f"{where} as {role}: {code}, not to {login}"
    else:
        assert code == 403, f"{where} as {role}: {code}, expected 403"


def test_every_route_of_the_project_is_in_the_matrix():
    missing = [route for route in PROJECT_ROUTES if route not in MATRIX]
    gone = [route for route in MATRIX if route not in PROJECT_ROUTES]
    assert not missing, f"routes missing from the permission matrix: {missing}"
    assert not gone, f"matrix entries whose route no longer exists: {gone}"
    assert ADMIN_ROUTES, "the admin's routes were not found"


def test_the_matrix_lists_every_method_an_api_route_answers():
    ids = {name: 1 for name in ("image_id", "model_id", "run_id", "alert_id")}
    for route in PROJECT_ROUTES:
        if not route.startswith("api/v1/") or route not in MATRIX:
            continue
        view = get_resolver().resolve(_url(route, {"slug": "x", "fmt": "x", **ids, **MISSING})).func
        if not hasattr(view, "view_class"):
            continue  # a plain function view (the ping): its methods are the matrix's
        answered = {m for m in view.view_class.http_method_names if m not in ("options", "head")}
        answered = {m for m in answered if hasattr(view.view_class, m)}
        assert answered == set(MATRIX[route]), f"{route}: the view answers {sorted(answered)}"


@pytest.mark.parametrize("route", PROJECT_ROUTES)
def test_permission_matrix(world, route):
    if route not in MATRIX:
        pytest.fail(f"{route} is missing from the permission matrix")
    url = _url(route, world["values"])
    kind = "api" if url.startswith("/api/") else "page"
    for method, allowed in MATRIX[route].items():
        for role in ROLES:
            client = world["api" if kind == "api" else "pages"][role]
            _check(kind, role, allowed, _call(client, method, url), f"{method.upper()} {url}")


def test_permission_matrix_of_the_admin(world):
    """Every admin route (changelists, add and change forms, history, the index): superusers only, no 5xx."""
    for route in ADMIN_ROUTES:
        url = _url(route, world["values"])
        for role in ROLES:
            response = world["pages"][role].get(url)
            _check("admin", role, ANYONE if route in ADMIN_OPEN else {"admin"}, response, f"GET {url}")


def test_a_robot_token_reaches_no_page_or_admin(world):
    robot = world["api"]["robot"]
    for path in ("/deployments/", "/models/", "/admin/"):
        response = robot.get(path)
        assert response.status_code in (302, 401, 403), (path, response.status_code)
