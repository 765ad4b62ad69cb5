"""Registered base models: stored with their sha256, loaded only through ultralytics' restricted loader on a
training worker, and offered with the model configs and the production model by the form and the API."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.training import selectors, services
from apps.training.models import BaseModel
from tests.builders import evil_checkpoint, yolo_checkpoint
from vectormlops.errors import Conflict, ValidationFailed

pytestmark = pytest.mark.django_db


def _upload(path, name=None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes(), content_type="application/octet-stream")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One real checkpoint and one that runs a command when unpickled (built once: torch takes seconds)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    marker = folder / "pwned"
    return {
        "good": yolo_checkpoint(folder / "yolov8n-untrained.pt"),
        "evil": evil_checkpoint(folder / "evil.pt", marker),
        "marker": marker,
    }


def test_a_real_checkpoint_is_stored_with_its_sha256_and_loads_safely_to_ready(checkpoints, ml_engineer):
    import hashlib

    base = services.base_model_register(name="v8n untrained", upload=_upload(checkpoints["good"]), user=ml_engineer)
    assert base.status == "checking" and base.sha256 == hashlib.sha256(checkpoints["good"].read_bytes()).hexdigest()
    assert base.storage_path == f"base-models/{base.sha256[:2]}/{base.sha256}.pt"
    base = services.base_model_check(base_model_id=base.pk)
    assert base.status == "ready" and base.details["task"] == "detect" and len(base.details["classes"]) == 80


def test_a_checkpoint_whose_pickle_runs_code_is_rejected_without_running_it(checkpoints):
    base = services.base_model_register(name="evil", upload=_upload(checkpoints["evil"]))
    base = services.base_model_check(base_model_id=base.pk)
    assert base.status == "rejected" and "supported" in base.error
    assert not checkpoints["marker"].exists()


@pytest.mark.parametrize(
    "name, filename, content, code",
    [
        ("bad/name", "x.pt", b"PK\x03\x04rest", "invalid_name"),
        ("ok", "x.onnx", b"PK\x03\x04rest", "invalid_weights"),
        ("ok", "x.pt", b"\x80\x04pickle", "invalid_weights"),
    ],
)
def test_bad_uploads_are_refused_before_anything_is_stored(name, filename, content, code):
    with pytest.raises(ValidationFailed) as error:
        services.base_model_register(name=name, upload=SimpleUploadedFile(filename, content))
    assert error.value.code == code and not BaseModel.objects.exists()


def test_a_name_or_file_registered_twice_is_a_conflict():
    services.base_model_register(name="one", upload=SimpleUploadedFile("a.pt", b"PK\x03\x04same"))
    for name, content in (("one", b"PK\x03\x04other"), ("two", b"PK\x03\x04same")):
        with pytest.raises(Conflict) as error:
            services.base_model_register(name=name, upload=SimpleUploadedFile("b.pt", content))
        assert error.value.code == "base_model_exists"


def test_runs_start_from_a_ready_base_model_only(api_as, ml_engineer, training_dataset):
    base = services.base_model_register(name="pre", upload=SimpleUploadedFile("a.pt", b"PK\x03\x04x"))
    client = api_as(ml_engineer)
    body = {"dataset": "vec", "imgsz": 64, "base": base.base_value}
    refused = client.post("/api/v1/training-runs", body, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "base_model_not_ready"
    BaseModel.objects.filter(pk=base.pk).update(status="ready", details={"classes": ["a"]})
    started = client.post("/api/v1/training-runs", body, format="json")
    assert started.status_code == 201 and started.json()["base"] == base.base_value
    assert started.json()["id"] and base.runs.count() == 1


def test_the_api_and_form_list_configs_registered_bases_and_production(api_as, client, ml_engineer, training_dataset):
    ready = BaseModel.objects.create(name="pre", storage_path="x", sha256="a" * 64, size=1, status="ready")
    BaseModel.objects.create(name="pending", storage_path="y", sha256="b" * 64, size=1)
    listed = api_as(ml_engineer).get("/api/v1/training/bases?dataset=vec").json()
    values = [choice["value"] for choice in listed]
    assert ready.base_value in values and "yolov8n.yaml" in values and "registered:" + str(ready.pk + 1) not in values
    assert [c["kind"] for c in listed if c["value"] == "production"] == []  # nothing in production here
    client.force_login(ml_engineer)
    form = client.get(reverse("training:run_new")).content.decode()
    assert f'value="{ready.base_value}"' in form and "run_new.js" in form
    assert [c["value"] for c in selectors.base_choices(None)] == values


def test_the_base_model_page_uploads_and_lists(client, ml_engineer):
    client.force_login(ml_engineer)
    url = reverse("training:base_model_list")
    response = client.post(url, {"name": "mine", "weights": SimpleUploadedFile("m.pt", b"PK\x03\x04m")}, follow=True)
    assert response.status_code == 200 and "loading it safely" in response.content.decode()
    assert BaseModel.objects.get().name == "mine"
    refused = client.post(url, {"name": "x", "weights": SimpleUploadedFile("m.txt", b"no")})
    assert "PyTorch .pt" in refused.content.decode()
