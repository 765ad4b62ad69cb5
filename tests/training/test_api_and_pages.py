"""The training API (shared/API.md), the pages and the admin, without a worker (tasks are not sent: the test
transaction never commits)."""

import pytest
from django.urls import reverse

from apps.training.models import EpochMetric, TrainingRun
from tests.builders import register_fake_model, run_in_state

pytestmark = pytest.mark.django_db


def test_post_training_run_returns_201_queued(api_as, ml_engineer, training_dataset):
    response = api_as(ml_engineer).post(
        "/api/v1/training-runs", {"dataset": "vec", "epochs": 2, "imgsz": 64, "batch": 4}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    run = TrainingRun.objects.get(pk=body["id"])
    assert body["status"] == "queued" and body["dataset"] == "vec" and body["version"]["number"] == 1
    assert run.trigger == "api" and run.epochs == 2 and run.created_by == ml_engineer


def test_post_with_an_explicit_version(api_as, ml_engineer, training_dataset):
    from apps.datasets.services import version_freeze

    version = version_freeze(dataset=training_dataset)
    response = api_as(ml_engineer).post(
        "/api/v1/training-runs", {"dataset": "vec", "version": version.pk, "epochs": 1, "imgsz": 64}, format="json"
    )
    assert response.status_code == 201 and response.json()["version"]["id"] == version.pk
    assert training_dataset.versions.count() == 1


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"dataset": "nope"}, 404, "unknown_dataset"),
        ({"dataset": "vec", "version": 999999}, 404, "unknown_version"),
        ({"dataset": "vec", "base": "yolov8n.pt"}, 400, "invalid_base"),
        ({"dataset": "vec", "epochs": 0}, 400, "invalid"),
        ({"dataset": "vec", "base": "production"}, 400, "no_production_model"),
    ],
)
def test_post_errors_use_the_envelope(api_as, ml_engineer, training_dataset, body, status, code):
    response = api_as(ml_engineer).post("/api/v1/training-runs", body, format="json")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert not TrainingRun.objects.exists()


def test_second_run_is_409(api_as, ml_engineer, training_dataset):
    client = api_as(ml_engineer)
    assert client.post("/api/v1/training-runs", {"dataset": "vec", "imgsz": 64}, format="json").status_code == 201
    response = client.post("/api/v1/training-runs", {"dataset": "vec", "imgsz": 64}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "run_in_progress"


def test_roles(api_as, annotator, reviewer, training_dataset):
    assert api_as(None).post("/api/v1/training-runs", {"dataset": "vec"}, format="json").status_code == 401
    for user in (annotator, reviewer):
        assert api_as(user).post("/api/v1/training-runs", {"dataset": "vec"}, format="json").status_code == 403
    run = run_in_state(training_dataset, status="training")
    assert api_as(annotator).get(f"/api/v1/training-runs/{run.pk}").status_code == 403
    assert api_as(annotator).post(f"/api/v1/training-runs/{run.pk}/cancel").status_code == 403


def test_get_run_with_epochs_final_metrics_and_model(api_as, ml_engineer, training_dataset, tmp_path):
    run = run_in_state(training_dataset, status="training")
    EpochMetric.objects.create(run=run, epoch=1, losses={"box": 1.0, "cls": 2.0, "dfl": 1.5}, map50=0.1, seconds=2)
    client = api_as(ml_engineer)
    body = client.get(f"/api/v1/training-runs/{run.pk}").json()
    assert body["status"] == "training" and body["model_id"] is None
    assert body["epoch_metrics"] == [
        {"epoch": 1, "losses": {"box": 1.0, "cls": 2.0, "dfl": 1.5}, "precision": None, "recall": None,
         "map50": 0.1, "map50_95": None, "seconds": 2.0}
    ]  # fmt: skip
    model = register_fake_model(run, tmp_path)
    body = client.get(f"/api/v1/training-runs/{run.pk}").json()
    assert body["status"] == "succeeded" and body["model_id"] == model.pk and body["model_number"] == 1
    assert body["final_metrics"] == {"val": {"map50": 0.5}}
    assert client.get("/api/v1/training-runs/999999").status_code == 404


def test_cancel_api(api_as, ml_engineer, training_dataset):
    run = run_in_state(training_dataset, status="training")
    client = api_as(ml_engineer)
    response = client.post(f"/api/v1/training-runs/{run.pk}/cancel")
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    TrainingRun.objects.filter(pk=run.pk).update(status="cancelled")
    response = client.post(f"/api/v1/training-runs/{run.pk}/cancel")
    assert response.status_code == 409 and response.json()["error"]["code"] == "run_not_active"


# --- pages ---------------------------------------------------------------------------------------------------


def test_pages_need_the_ml_engineer_role(client, annotator, training_dataset):
    client.force_login(annotator)
    assert client.get(reverse("training:run_list")).status_code == 403
    assert client.get(reverse("training:run_new")).status_code == 403


def test_list_detail_and_new_pages(client, ml_engineer, training_dataset, tmp_path, django_assert_max_num_queries):
    client.force_login(ml_engineer)
    run = run_in_state(training_dataset, status="training")
    EpochMetric.objects.create(run=run, epoch=1, losses={"box": 1.0, "cls": 2.0, "dfl": 1.5}, map50=0.1, seconds=2)
    register_fake_model(run, tmp_path)
    with django_assert_max_num_queries(12):
        page = client.get(reverse("training:run_list"))
    assert page.status_code == 200 and f"#{run.pk}" in page.content.decode()
    detail = client.get(reverse("training:run_detail", args=[run.pk])).content.decode()
    assert (
        "loss-chart" in detail
        and "epoch-table" in detail
        and "chart.umd.min.js" in detail
        and "run_detail.js" in detail
    )
    assert "Model v1" in detail and '"map50": 0.1' in detail
    form = client.get(reverse("training:run_new") + "?dataset=vec").content.decode()
    assert 'name="epochs"' in form and 'value="vec" selected' in form


def test_new_run_form_starts_a_run_and_cancel_button(client, ml_engineer, training_dataset):
    client.force_login(ml_engineer)
    response = client.post(
        reverse("training:run_new"),
        {"dataset": "vec", "version": "", "base": "", "epochs": 3, "imgsz": 64, "batch": 4, "patience": 5,
         "seed": 1, "device": "auto"},
    )  # fmt: skip
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response.url == reverse("training:run_detail", args=[run.pk])
    assert run.trigger == "web" and run.epochs == 3 and run.seed == 1
    again = client.post(
        reverse("training:run_new"),
        {"dataset": "vec", "epochs": 3, "imgsz": 64, "batch": 4, "patience": 5, "seed": 1, "device": "auto"},
    )
    assert again.status_code == 200 and "still queued" in again.content.decode()
    client.post(reverse("training:run_cancel", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_admin_start_and_cancel(client, make_user, training_dataset):
    admin_user = make_user("root", "admin")
    client.force_login(admin_user)
    add_url = reverse("admin:training_trainingrun_add")
    assert client.get(add_url + "?dataset=vec").status_code == 200
    response = client.post(
        add_url, {"dataset": "vec", "epochs": 2, "imgsz": 64, "batch": 4, "patience": 5, "seed": 0, "device": "auto"}
    )
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and run.trigger == "admin" and run.created_by == admin_user
    changelist = reverse("admin:training_trainingrun_changelist")
    assert client.get(changelist).status_code == 200
    assert client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).status_code == 200
    client.post(changelist, {"action": "cancel_runs", "_selected_action": [run.pk]})
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert client.get(reverse("admin:training_retrainpolicy_add")).status_code == 200
    assert client.get(reverse("admin:training_modelversion_changelist")).status_code == 200


def test_the_dataset_page_shows_the_training_panel_to_engineers_only(client, ml_engineer, annotator, training_dataset):
    """Training installs its panel on the dataset page; datasets itself names no training URL."""
    from apps.datasets.services import version_freeze

    version = version_freeze(dataset=training_dataset)
    client.force_login(ml_engineer)
    page = client.get("/datasets/vec/").content.decode()
    assert 'id="train-link" href="/training/runs/new/?dataset=vec"' in page
    assert f'href="/training/runs/new/?dataset=vec&version={version.pk}">v1</a>' in page
    client.force_login(annotator)
    page = client.get("/datasets/vec/").content.decode()
    assert "train-link" not in page and "/training/runs/new/" not in page


def test_compare_page_lists_settings_that_differ_and_refuses_runs_of_two_datasets(client, ml_engineer, tmp_path):
    from tests.builders import make_training_dataset

    client.force_login(ml_engineer)
    dataset = make_training_dataset(slug="cmp")
    first = run_in_state(dataset, status="succeeded")
    second = run_in_state(dataset, status="failed", seed=7)
    url = reverse("training:run_compare")
    body = client.get(f"{url}?runs={first.pk}&runs={second.pk}").content.decode()
    assert 'data-setting="seed" class="table-warning differs"' in body
    assert 'data-setting="imgsz" class="text-muted"' in body

    other = run_in_state(make_training_dataset(slug="other"), status="succeeded")
    response = client.get(f"{url}?runs={first.pk}&runs={other.pk}", follow=True)
    assert "not comparable" in response.content.decode()
    assert "one" in client.get(f"{url}?runs={first.pk}", follow=True).content.decode()
