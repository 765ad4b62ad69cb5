"""The datasets API as shared/API.md fixes it: upload, list, datasets, versions; errors in the envelope."""

from pathlib import Path

import pytest
from django.conf import settings

from apps.datasets.models import Image
from tests.builders import jpeg, make_image, png, upload
from tests.datasets.test_ingest import media_files, png_header_bomb

pytestmark = pytest.mark.django_db


def post_image(client, data: bytes, name="x.jpg", **fields):
    body = {"file": upload(data, name), "dataset": "robots", **fields}
    return client.post("/api/v1/images", body, format="multipart")


def test_an_annotator_uploads_an_image_then_the_same_bytes_are_a_duplicate(api_as, annotator, dataset):
    client = api_as(annotator)
    first = post_image(client, jpeg(1), meta='{"reason": "test"}', captured_at="2026-11-27T09:30:00+01:00")
    assert first.status_code == 201, first.json()
    body = first.json()
    assert set(body) == {"id", "sha256", "split", "duplicate"} and body["duplicate"] is False
    image = Image.objects.get(pk=body["id"])
    assert image.uploaded_by == annotator and image.source == "upload" and image.robot_serial == ""
    assert image.meta == {"reason": "test"} and image.captured_at.isoformat() == "2026-11-27T08:30:00+00:00"
    again = post_image(client, jpeg(1))
    assert again.status_code == 200 and again.json() == {**body, "duplicate": True}
    naive = post_image(client, jpeg(2), captured_at="2026-11-27T09:30:00")  # no offset: taken as UTC
    assert naive.status_code == 201, naive.json()
    assert Image.objects.get(pk=naive.json()["id"]).captured_at.isoformat() == "2026-11-27T09:30:00+00:00"


def test_a_robot_uploads_with_its_bearer_token_and_its_serial_is_recorded(client, dataset):
    from apps.deployments.authentication import token_hash
    from apps.deployments.models import Robot

    fields = {f.name for f in Robot._meta.fields}
    kwargs = {"serial": "00e20115", "token_hash": token_hash("robot-secret")}
    if "name" in fields:
        kwargs["name"] = "Vector-A1B2"
    Robot.objects.create(**kwargs)
    response = client.post(
        "/api/v1/images",
        {"file": upload(jpeg(2)), "dataset": "robots", "source": "low_confidence"},
        HTTP_AUTHORIZATION="Bearer robot-secret",
    )
    assert response.status_code == 201, response.json()
    image = Image.objects.get(pk=response.json()["id"])
    assert (image.robot_serial, image.source, image.uploaded_by) == ("00e20115", "low_confidence", None)


@pytest.mark.parametrize(
    "data, name, fields, status, code",
    [
        (b"hello, I am text\n" * 20, "text.jpg", {}, 400, "not_an_image"),
        (jpeg(3)[:-300], "cut.jpg", {}, 400, "truncated_image"),
        (png_header_bomb(), "bomb.png", {}, 413, "image_too_large"),
        (b"", "empty.jpg", {}, 400, "empty_file"),
        (b"\xff\xd8\xff" + b"\0" * (25 * 1024 * 1024), "big.jpg", {}, 413, "file_too_large"),
        (jpeg(4), "x.jpg", {"dataset": "no-such-dataset"}, 404, "unknown_dataset"),
        (jpeg(4), "x.jpg", {"meta": "[1, 2, 3]"}, 400, "invalid_meta"),
        (jpeg(4), "x.jpg", {"meta": "{not json"}, 400, "invalid_meta"),
        (jpeg(4), "x.jpg", {"captured_at": "last tuesday"}, 400, "invalid_captured_at"),
        (jpeg(4), "x.jpg", {"source": "import"}, 400, "invalid_source"),
    ],
    ids=[
        "text-named-jpg",
        "truncated-jpeg",
        "png-header-bomb",
        "empty-file",
        "25MB",
        "unknown-dataset",
        "meta-not-object",
        "meta-not-json",
        "captured-at-not-iso",
        "bad-source",
    ],
)
def test_bad_uploads_get_their_own_code_and_write_nothing(api_as, annotator, dataset, data, name, fields, status, code):
    response = post_image(api_as(annotator), data, name, **fields)
    assert response.status_code == status, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert Image.objects.count() == 0 and media_files() == []


def test_upload_needs_credentials_and_a_role(api_as, make_user, dataset):
    assert post_image(api_as(None), jpeg(5)).status_code == 401
    assert post_image(api_as(make_user("norole")), jpeg(5)).status_code == 403
    assert Image.objects.count() == 0


def test_images_list_filters_and_pages_with_a_cursor(api_as, annotator, dataset, django_assert_max_num_queries):
    images = [make_image(dataset, seed) for seed in range(5)]
    make_image(dataset, 99, boxes=[{"class_id": 1, "box": [1, 1, 10, 10]}], status="submitted")
    client = api_as(annotator)
    with django_assert_max_num_queries(6):
        response = client.get("/api/v1/images", {"dataset": "robots", "page_size": 3})
    assert response.status_code == 200
    body = response.json()
    assert [r["id"] for r in body["results"]] == sorted([i.pk for i in images] + [images[-1].pk + 1], reverse=True)[:3]
    assert {"id", "sha256", "split", "status", "source", "width", "height"} <= set(body["results"][0])
    rest = client.get(body["next"]).json()
    assert len(rest["results"]) == 3 and rest["next"] is None
    submitted = client.get("/api/v1/images", {"dataset": "robots", "status": "submitted"}).json()["results"]
    assert [r["status"] for r in submitted] == ["submitted"]
    by_class = client.get("/api/v1/images", {"dataset": "robots", "class": "cube"}).json()["results"]
    assert len(by_class) == 1
    bad = client.get("/api/v1/images", {"dataset": "robots", "split": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_split"


def test_images_list_query_count_does_not_grow_with_the_page(api_as, annotator, dataset, django_assert_max_num_queries):
    for seed in range(12):
        make_image(dataset, seed)
    client = api_as(annotator)
    with django_assert_max_num_queries(6):
        assert len(client.get("/api/v1/images", {"dataset": "robots"}).json()["results"]) == 12


def test_datasets_list_has_counts_and_creation_is_for_ml_engineers(api_as, annotator, ml_engineer, dataset):
    make_image(dataset, 1)
    make_image(dataset, 2, boxes=[], status="approved")
    listed = api_as(annotator).get("/api/v1/datasets")
    assert listed.status_code == 200
    row = next(d for d in listed.json() if d["slug"] == "robots")
    assert row["counts"]["images"] == 2
    assert row["counts"]["status"]["unlabeled"] == 1 and row["counts"]["status"]["approved"] == 1
    assert sum(row["counts"]["split"].values()) == 2
    body = {"slug": "vector", "name": "Vector robots", "classes": ["vector"]}
    assert api_as(annotator).post("/api/v1/datasets", body, format="json").status_code == 403
    created = api_as(ml_engineer).post("/api/v1/datasets", body, format="json")
    assert created.status_code == 201 and created.json()["classes"] == ["vector"]
    taken = api_as(ml_engineer).post("/api/v1/datasets", body, format="json")
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "slug_taken"


def test_freezing_a_version_over_the_api(api_as, annotator, ml_engineer, dataset):
    make_image(dataset, 1, boxes=[{"class_id": 0, "box": [2, 2, 20, 20]}], status="approved")
    make_image(dataset, 2, boxes=[{"class_id": 1, "box": [2, 2, 20, 20]}], status="submitted")
    assert api_as(annotator).post("/api/v1/datasets/robots/versions", {}, format="json").status_code == 403
    response = api_as(ml_engineer).post("/api/v1/datasets/robots/versions", {}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert {"id", "number", "manifest_sha256", "counts"} <= set(body) and body["number"] == 1
    assert body["counts"]["boxes"] == {"vector": 1, "cube": 0} and sum(body["counts"]["images"].values()) == 1
    missing = api_as(ml_engineer).post("/api/v1/datasets/nope/versions", {}, format="json")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_dataset"


def test_image_and_thumbnail_files_are_served_to_annotators_only(client, make_user, dataset):
    image = make_image(dataset, 1)
    client.force_login(make_user("norole"))
    assert client.get(f"/datasets/images/{image.pk}/file").status_code == 403
    client.force_login(make_user("ann", "annotator"))
    response = client.get(f"/datasets/images/{image.pk}/file")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content) == (Path(settings.MEDIA_ROOT) / image.storage_path).read_bytes()
    thumb = client.get(f"/datasets/images/{image.pk}/thumb")
    assert thumb.status_code == 200 and b"".join(thumb.streaming_content)[:2] == b"\xff\xd8"
    assert client.get(f"/datasets/images/{image.pk}/file", HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304


def test_png_upload_keeps_png(api_as, annotator, dataset):
    response = post_image(api_as(annotator), png(3), "x.png")
    assert response.status_code == 201
    assert Image.objects.get().format == "PNG"
