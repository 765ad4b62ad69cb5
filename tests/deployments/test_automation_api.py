"""Automation endpoints for ML engineers: promote (with the gate verdict), rollback, history, models with status."""

import pytest

from apps.deployments import services
from apps.deployments.models import Deployment, GateDecision
from tests.builders import make_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(api_as, ml_engineer):
    return api_as(ml_engineer)


def test_promote_then_promote_again_changes_nothing(api, dataset):
    v1 = make_model(dataset, 1)
    first = api.post(f"/api/v1/models/{v1.pk}/promote", {"channel": "production", "reason": "go"}, format="json")
    assert first.status_code == 201
    body = first.json()
    assert body["model_id"] == v1.pk and body["channel"] == "production" and body["is_live"] and body["changed"]
    assert body["created_by"] == "engineer1"
    again = api.post(f"/api/v1/models/{v1.pk}/promote", {"channel": "production", "reason": "again"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == body["id"] and not again.json()["changed"]
    assert Deployment.objects.count() == 1


def test_a_person_may_override_a_refusing_gate_and_the_verdict_is_kept(api, dataset):
    v1, v2 = make_model(dataset, 1), make_model(dataset, 2)
    services.model_promote(model=v1, channel="production", reason="v1")
    decision = GateDecision.objects.create(candidate=v2, production=v1, passed=False, reasons=["dark slice dropped"])
    response = api.post(
        f"/api/v1/models/{v2.pk}/promote", {"channel": "production", "reason": "field says v2 is fine"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["gate_decision_id"] == decision.pk and body["gate_passed"] is False
    assert body["reason"] == "field says v2 is fine"


def test_promote_validates_its_input(api, dataset):
    v1 = make_model(dataset, 1)
    no_reason = api.post(f"/api/v1/models/{v1.pk}/promote", {"channel": "production"}, format="json")
    assert no_reason.status_code == 400 and no_reason.json()["error"]["code"] == "invalid"
    canary = api.post(f"/api/v1/models/{v1.pk}/promote", {"channel": "canary", "reason": "x"}, format="json")
    assert canary.status_code == 400
    assert api.post("/api/v1/models/99999/promote", {"reason": "x"}, format="json").status_code == 404


def test_rollback_and_history_newest_first(api, dataset):
    v1, v2 = make_model(dataset, 1), make_model(dataset, 2)
    services.model_promote(model=v1, channel="production", reason="v1")
    services.model_promote(model=v2, channel="production", reason="v2")
    response = api.post(
        "/api/v1/datasets/vector/rollback", {"channel": "production", "reason": "v2 bad"}, format="json"
    )
    assert response.status_code == 201 and response.json()["model_id"] == v1.pk
    assert response.json()["action"] == "rollback"
    nothing = api.post("/api/v1/datasets/vector/rollback", {"reason": "again"}, format="json")
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "no_previous_deployment"
    history = api.get("/api/v1/datasets/vector/deployments").json()["results"]
    assert [(h["action"], h["version"], h["is_live"]) for h in history] == [
        ("rollback", 1, True),
        ("promote", 2, False),
        ("promote", 1, False),
    ]
    assert api.get("/api/v1/datasets/nope/deployments").status_code == 404


def test_models_list_and_detail_show_the_lifecycle_status(api, dataset, django_assert_max_num_queries):
    v1, v2, v3, v4, v5 = (make_model(dataset, n) for n in range(1, 6))
    services.model_promote(model=v1, channel="production", reason="v1")
    services.model_promote(model=v2, channel="production", reason="v2")  # v1 retired
    services.model_promote(model=v3, channel="canary", canary_percent=10, reason="v3")
    GateDecision.objects.create(candidate=v4, passed=False, reasons=["worse"])
    with django_assert_max_num_queries(8):  # constant, whatever the number of models
        listing = api.get("/api/v1/models", {"dataset": "vector"})
    statuses = {m["version"]: m["status"] for m in listing.json()["results"]}
    assert statuses == {1: "retired", 2: "production", 3: "canary", 4: "rejected", 5: "candidate"}
    detail = api.get(f"/api/v1/models/{v4.pk}").json()
    assert detail["status"] == "rejected" and detail["gate"]["passed"] is False
    assert detail["gate_decisions"][0]["reasons"] == ["worse"]
    assert set(detail["artifacts"]) == {"onnx", "pt"}


def test_a_production_promotion_queues_labelings_prelabel_task_with_plain_data(
    dataset, monkeypatch, django_capture_on_commit_callbacks
):
    from apps.labeling import tasks

    sent = []
    task = tasks.prelabel_dataset_task
    monkeypatch.setattr(task, "apply_async", lambda args, **options: sent.append((args, options)))
    v1 = make_model(dataset, 1)
    with django_capture_on_commit_callbacks(execute=True):
        services.model_promote(model=v1, channel="production", reason="v1")
    [(args, options)] = sent
    assert args == (dataset.pk, v1.pk, v1.artifacts.get(format="pt").storage_path)
    # Published with a bounded retry and no result subscription: a dead broker cannot hold a promotion for long.
    assert options["retry_policy"]["max_retries"] == 1 and options["ignore_result"] is True
