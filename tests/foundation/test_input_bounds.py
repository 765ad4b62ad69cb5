"""Inputs that once answered 500 (issue 17): each now answers 400 (404 for a path id) with a stable code, before
anything reaches the database. Runs on SQLite and PostgreSQL (NUL and lone surrogates matter to PostgreSQL)."""

import json

import pytest

from tests.builders import jpeg, make_dataset, make_image, make_model, make_robot, upload

BEYOND_64_BITS = 2**64 + 1


@pytest.fixture
def dataset(db):
    return make_dataset("robots", classes=("vector",))


@pytest.fixture
def robot(robot_token, api_as):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {robot_token}")
    return client


@pytest.fixture
def robot_token(db):
    return make_robot(serial="00bound1")[1]


def telemetry(client, dataset, **record_fields):
    record = {"captured_at": "2026-11-27T10:00:00Z", "latency_ms": 41.5, "detections": [], "image_stats": {}}
    record.update(record_fields)
    return client.post("/api/v1/telemetry", {"dataset": dataset.slug, "records": [record]}, "json")


def raw_json(client, url, text: str):
    return client.post(url, data=text.encode("utf-8", "surrogatepass"), content_type="application/json")


def assert_400(response, code: str):
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code


def test_a_huge_integer_in_labeling_next_exclude(dataset, annotator, api_as):
    make_image(dataset, seed=1)
    response = api_as(annotator).post(
        f"/api/v1/labeling/datasets/{dataset.slug}/next", {"exclude": [BEYOND_64_BITS]}, "json"
    )
    assert_400(response, "number_out_of_range")


def test_a_huge_integer_in_labeling_next_exclude_as_a_form(dataset, annotator, api_as):
    response = api_as(annotator).post(f"/api/v1/labeling/datasets/{dataset.slug}/next", {"exclude": BEYOND_64_BITS})
    assert_400(response, "number_out_of_range")


@pytest.mark.parametrize("captured_at", ["2026-13-01T10:00:00Z", "2026-11-27T10:00:00+99:00"])
def test_telemetry_captured_at_month_13_or_offset_99_hours(dataset, robot, captured_at):
    assert_400(telemetry(robot, dataset, captured_at=captured_at), "bad_telemetry")


def test_400_digit_numbers_in_telemetry(dataset, robot):
    body = '{"dataset": "robots", "records": [{"captured_at": "2026-11-27T10:00:00Z", "latency_ms": %s}]}'
    assert_400(raw_json(robot, "/api/v1/telemetry", body % ("9" * 400)), "number_out_of_range")
    assert_400(raw_json(robot, "/api/v1/telemetry", body % ("1" + "0" * 399 + ".5")), "number_out_of_range")


def test_upload_captured_at_in_year_9999(dataset, annotator, api_as):
    for captured_at in ("9999-12-31T23:59:59-05:00", "9999-01-01T00:00:00Z"):
        response = api_as(annotator).post(
            "/api/v1/images", {"file": upload(jpeg(3)), "dataset": "robots", "captured_at": captured_at}
        )
        assert_400(response, "invalid_captured_at")
    assert not dataset.images.exists()


def test_meta_nested_100000_levels(dataset, annotator, api_as):
    meta = "[" * 100_000 + "]" * 100_000
    response = api_as(annotator).post("/api/v1/images", {"file": upload(jpeg(4)), "dataset": "robots", "meta": meta})
    assert_400(response, "too_deep")
    assert not dataset.images.exists()


def test_a_json_body_nested_100000_levels(dataset, robot):
    assert_400(raw_json(robot, "/api/v1/telemetry", '{"records": ' + "[" * 100_000 + "]" * 100_000 + "}"), "too_deep")


@pytest.mark.parametrize("text", ["nul\x00here", "lone\ud800surrogate"])
def test_nul_or_a_lone_surrogate_in_meta(dataset, annotator, api_as, text):
    meta = json.dumps({"note": text})  # escaped: \u0000 and \ud800 as JSON says them
    response = api_as(annotator).post("/api/v1/images", {"file": upload(jpeg(5)), "dataset": "robots", "meta": meta})
    assert_400(response, "invalid_characters")
    assert not dataset.images.exists()


@pytest.mark.parametrize("text", ["nul\x00here", "lone\ud800surrogate"])
def test_nul_or_a_lone_surrogate_in_telemetry(dataset, robot, text):
    response = raw_json(robot, "/api/v1/telemetry", json.dumps({"dataset": "robots", "records": [{"tag": text}]}))
    assert_400(response, "invalid_characters")


def test_nul_in_a_query_string(dataset, annotator, api_as):
    assert_400(api_as(annotator).get("/api/v1/images", {"dataset": "robots\x00"}), "invalid_characters")


def test_a_poll_with_x_model_id_superscript_two(dataset, robot):
    response = robot.get("/api/v1/robot/model", {"dataset": "robots"}, HTTP_X_MODEL_ID="²")
    assert_400(response, "invalid_model_id")


def test_ids_and_versions_beyond_64_bits_in_bodies_and_queries(dataset, robot, ml_engineer, api_as):
    model = make_model(dataset, 1)
    body = {"dataset": "robots", "model_id": BEYOND_64_BITS, "records": []}
    assert_400(robot.post("/api/v1/telemetry", body, "json"), "number_out_of_range")
    assert_400(api_as(ml_engineer).get("/api/v1/models", {"dataset": str(BEYOND_64_BITS)}), "number_out_of_range")
    assert api_as(ml_engineer).get(f"/api/v1/models/{model.pk}").status_code == 200


@pytest.mark.parametrize(
    "path", ["/api/v1/models/{n}", "/api/v1/training-runs/{n}", "/api/v1/imports/{n}", "/api/v1/models/{n}/promote"]
)
def test_url_path_ids_beyond_64_bits_are_not_found(db, ml_engineer, api_as, path):
    url = path.format(n=BEYOND_64_BITS)
    client = api_as(ml_engineer)
    response = client.post(url, {}, "json") if url.endswith("promote") else client.get(url)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("moment", ["yesterday", "2026-13-01T00:00:00", "9999-12-31T23:59:59-05:00"])
def test_an_image_time_window_that_is_not_a_date_time_in_range(dataset, annotator, api_as, moment):
    response = api_as(annotator).get("/api/v1/images", {"dataset": dataset.slug, "uploaded_after": moment})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_datetime"


def test_an_image_time_window_filters_to_the_second(dataset, annotator, api_as):
    from datetime import timedelta

    from apps.datasets.models import Image

    early, late = make_image(dataset, seed=1), make_image(dataset, seed=2)
    Image.objects.filter(pk=early.pk).update(uploaded_at=late.uploaded_at - timedelta(hours=2))
    after = (late.uploaded_at - timedelta(hours=1)).isoformat()
    response = api_as(annotator).get("/api/v1/images", {"dataset": dataset.slug, "uploaded_after": after})
    assert response.status_code == 200 and [row["id"] for row in response.json()["results"]] == [late.pk]
