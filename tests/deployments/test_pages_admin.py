"""Pages (ml_engineer), confirmation pages behind the admin actions, the admin itself and register_robot."""

import io
import time

import pytest
from django.core.management import call_command

from apps.deployments import services
from apps.deployments.authentication import token_hash
from apps.deployments.models import Deployment, GateDecision, PromotionPolicy, Robot
from apps.training import hooks
from apps.training.models import ModelVersion
from apps.training.signals import model_trained
from tests.builders import dataset_row, make_model, stored_image_row

pytestmark = pytest.mark.django_db


@pytest.fixture
def engineer_client(client, ml_engineer):
    client.force_login(ml_engineer)
    return client


def test_pages_show_live_deployments_history_and_models(engineer_client, dataset):
    v1, v2 = make_model(dataset, 1), make_model(dataset, 2)
    services.model_promote(model=v1, channel="production", reason="first of all")
    services.model_promote(model=v2, channel="canary", canary_percent=10, reason="try it")
    GateDecision.objects.create(candidate=v2, production=v1, passed=False, reasons=["slice dark dropped"])
    home = engineer_client.get("/deployments/")
    assert home.status_code == 200 and b"vector" in home.content
    page = engineer_client.get("/deployments/vector/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "first of all" in html and "slice dark dropped" in html and "deployments.vector" in html
    models = engineer_client.get("/models/").content.decode()
    assert "production" in models and "canary" in models


def test_pages_need_the_ml_engineer_role(client, annotator, dataset):
    client.force_login(annotator)
    for url in ("/deployments/", "/deployments/vector/", "/models/"):
        assert client.get(url).status_code == 403


def test_the_promote_confirmation_needs_a_reason_and_then_promotes(engineer_client, dataset, ml_engineer):
    v1 = make_model(dataset, 1)
    url = f"/models/{v1.pk}/promote/"
    assert engineer_client.get(url).status_code == 200
    assert engineer_client.post(url, {"channel": "production", "reason": ""}).status_code == 200
    assert not Deployment.objects.exists()
    response = engineer_client.post(url, {"channel": "production", "reason": "ship it"})
    assert response.status_code == 302
    deployment = Deployment.objects.get()
    assert deployment.model == v1 and deployment.created_by == ml_engineer and deployment.reason == "ship it"


def test_rollback_and_canary_end_confirmations(engineer_client, dataset):
    v1, v2, v3 = (make_model(dataset, n) for n in (1, 2, 3))
    services.model_promote(model=v1, channel="production", reason="v1")
    services.model_promote(model=v2, channel="production", reason="v2")
    services.model_promote(model=v3, channel="canary", canary_percent=5, reason="v3 canary")
    assert engineer_client.get("/deployments/vector/rollback/").status_code == 200
    engineer_client.post("/deployments/vector/rollback/", {"reason": "v2 bad"})
    assert Deployment.objects.get(channel="production", is_live=True).model == v1
    engineer_client.post("/deployments/vector/canary/end/", {"outcome": "drop", "reason": "v3 bad"})
    assert not Deployment.objects.filter(channel="canary", is_live=True).exists()


def test_admin_actions_open_the_confirmation_pages(client, make_user, dataset):
    admin = make_user("boss", "admin")
    client.force_login(admin)
    v1 = make_model(dataset, 1)
    response = client.post(
        "/admin/deployments/registrymodel/",
        {"action": "promote_to_production", "_selected_action": [v1.pk]},
    )
    assert response.status_code == 302 and response["Location"] == f"/models/{v1.pk}/promote/?channel=production"
    response = client.post(
        "/admin/deployments/datasetdeployments/",
        {"action": "roll_back_production", "_selected_action": [dataset.pk]},
    )
    assert response.status_code == 302 and response["Location"] == "/deployments/vector/rollback/"
    for url in (
        "/admin/deployments/registrymodel/",
        "/admin/deployments/datasetdeployments/",
        "/admin/deployments/robot/",
        "/admin/deployments/deployment/",
        "/admin/deployments/promotionpolicy/",
        "/admin/deployments/robot/add/",
    ):
        assert client.get(url).status_code == 200, url


def test_admin_registers_a_robot_and_shows_the_token_once(client, make_user, db):
    client.force_login(make_user("boss", "admin"))
    response = client.post("/admin/deployments/robot/add/", {"serial": "00e20115", "name": "A"}, follow=True)
    assert response.status_code == 200
    robot = Robot.objects.get(serial="00e20115")
    shown = [str(m) for m in response.context["messages"]]
    token = shown[0].rsplit(" ", 1)[-1]
    assert token_hash(token) == robot.token_hash
    # Renaming keeps the token.
    response = client.post(f"/admin/deployments/robot/{robot.pk}/change/", {"name": "Vector-B2"}, follow=True)
    assert response.status_code == 200
    robot.refresh_from_db()
    assert robot.name == "Vector-B2" and token_hash(token) == robot.token_hash


def test_register_robot_command_prints_the_token_alone_on_its_last_line(db):
    out = io.StringIO()
    call_command("register_robot", "--serial", "00e20115", "--name", "Vector-A1B2", stdout=out)
    token = out.getvalue().strip().splitlines()[-1]
    assert " " not in token
    assert Robot.objects.get(serial="00e20115").token_hash == token_hash(token)


def test_training_can_ask_which_model_is_in_production(dataset):
    v1 = make_model(dataset, 1)
    assert hooks.production_model_for(dataset) is None
    services.model_promote(model=v1, channel="production", reason="v1")
    assert hooks.production_model_for(dataset) == v1


@pytest.mark.slow
@pytest.mark.parametrize("auto_promote", [True, False])
def test_model_trained_signal_evaluates_gates_and_auto_promotes(celery_worker_thread, tiny_weights, auto_promote):
    dataset = dataset_row("auto")
    for i in range(5):
        stored_image_row(dataset, seed=300 + i, brightness=(0.5, 1.0, 1.4)[i % 3])
    PromotionPolicy.objects.create(dataset=dataset, min_map50=0.0, min_test_images=5, auto_promote=auto_promote)
    model = make_model(dataset, 1, pt=tiny_weights)

    model_trained.send(sender=ModelVersion, model_version=model, run=None)

    deadline = time.monotonic() + 120
    while not GateDecision.objects.filter(candidate=model).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    decision = GateDecision.objects.get(candidate=model)
    assert decision.passed, decision.reasons
    time.sleep(0.5)  # the promotion commits right after the decision
    live = Deployment.objects.filter(dataset=dataset, channel="production", is_live=True)
    if auto_promote:
        deployment = live.get()
        assert deployment.model == model and deployment.gate_decision == decision and deployment.created_by is None
    else:
        assert not live.exists()  # it waits for a person


def test_a_staff_ml_engineer_uses_the_deployments_admin(client, make_user, dataset):
    engineer = make_user("staff-engineer", "ml_engineer")
    engineer.is_staff = True
    engineer.save()
    client.force_login(engineer)
    for url in (
        "/admin/deployments/registrymodel/",
        "/admin/deployments/robot/",
        "/admin/deployments/promotionpolicy/",
    ):
        assert client.get(url).status_code == 200, url
    annotator = make_user("staff-annotator", "annotator")
    annotator.is_staff = True
    annotator.save()
    client.force_login(annotator)
    assert client.get("/admin/deployments/registrymodel/").status_code == 403
