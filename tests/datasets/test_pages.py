"""The datasets pages and admin: list with counts, the grid (filters, keyset pages), versions, export, admin actions."""

import io
import zipfile

import pytest
from django.urls import reverse

from apps.datasets.models import DatasetVersion, Image
from apps.datasets.services import version_freeze
from tests.builders import make_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, annotator):
    client.force_login(annotator)
    return client


def test_pages_need_sign_in_and_a_role(client, make_user, dataset):
    assert client.get("/datasets/").status_code == 302
    client.force_login(make_user("norole"))
    assert client.get("/datasets/").status_code == 403
    assert (
        reverse("datasets:list") == "/datasets/" and reverse("datasets:detail", args=["robots"]) == "/datasets/robots/"
    )


def test_the_list_shows_counts(logged_in, dataset):
    make_image(dataset, 1)
    make_image(dataset, 2, boxes=[], status="approved")
    page = logged_in.get("/datasets/").content.decode()
    assert "Robots" in page and "/datasets/robots/" in page
    assert "New dataset" not in page  # annotators don't create datasets


def test_the_grid_filters_and_pages_by_keyset_without_counting(logged_in, dataset, django_assert_max_num_queries):
    images = [make_image(dataset, seed) for seed in range(5)]
    make_image(dataset, 50, boxes=[{"class_id": 1, "box": [1, 1, 9, 9]}], status="submitted")
    from apps.datasets import views

    views.PAGE_SIZE, old = 2, views.PAGE_SIZE
    try:
        with django_assert_max_num_queries(10) as captured:
            first = logged_in.get("/datasets/robots/")
        assert not any("COUNT(" in q["sql"].upper() for q in captured.captured_queries)
        assert first.status_code == 200
        shown = [i.pk for i in first.context["images"]]
        assert shown == sorted([i.pk for i in images] + [images[-1].pk + 1], reverse=True)[:2]
        assert f"/label/robots/?image={shown[0]}" in first.content.decode()
        older = logged_in.get("/datasets/robots/" + first.context["next_url"])
        assert [i.pk for i in older.context["images"]] == [images[3].pk, images[2].pk]
    finally:
        views.PAGE_SIZE = old
    filtered = logged_in.get("/datasets/robots/", {"status": "submitted", "class": "cube"})
    assert [i.status for i in filtered.context["images"]] == ["submitted"]
    assert logged_in.get("/datasets/robots/", {"class": "vector"}).context["images"] == []
    assert logged_in.get("/datasets/robots/", {"split": "bogus"}).context["filter_error"]
    thumb_url = reverse("datasets:image_thumb", args=[shown[0]])
    assert thumb_url in first.content.decode() and "datasets/upload.js" in first.content.decode()


def test_engineers_freeze_export_and_import_from_the_page(client, ml_engineer, dataset):
    client.force_login(ml_engineer)
    make_image(dataset, 1, boxes=[{"class_id": 0, "box": [1, 1, 20, 20]}], status="approved")
    page = client.get("/datasets/robots/").content.decode()
    assert "Import a zip" in page and "Freeze version" in page
    assert 'href="/training/runs/new/?dataset=robots">Train a model' in page
    assert client.post("/datasets/robots/versions/freeze", {"note": "page"}).status_code == 302
    version = DatasetVersion.objects.get()
    assert version.note == "page"
    page = client.get("/datasets/robots/").content.decode()
    assert "/datasets/robots/versions/1/export.yolo" in page
    response = client.get("/datasets/robots/versions/1/export.coco")
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
    names = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
    assert any(n.endswith("_annotations.coco.json") for n in names)
    assert client.get("/datasets/robots/versions/1/export.tiff").status_code == 404


def test_annotators_cannot_export_or_import(logged_in, dataset):
    make_image(dataset, 1, boxes=[], status="approved")
    version_freeze(dataset=dataset)
    assert logged_in.get("/datasets/robots/versions/1/export.yolo").status_code == 403
    assert logged_in.post("/datasets/robots/import", {}).status_code == 403
    assert "Train a model" not in logged_in.get("/datasets/robots/").content.decode()


def test_admin_freeze_and_pin_actions_call_the_services(admin_client, dataset):
    image = make_image(dataset, 1, boxes=[], status="approved")
    response = admin_client.post(
        "/admin/datasets/dataset/", {"action": "freeze_version", "_selected_action": [dataset.pk]}
    )
    assert response.status_code == 302 and DatasetVersion.objects.filter(dataset=dataset).count() == 1
    target = "test" if image.split != "test" else "val"
    confirm = admin_client.post("/admin/datasets/image/", {"action": "pin_split", "_selected_action": [image.pk]})
    assert confirm.status_code == 200 and b"Pin the split" in confirm.content
    admin_client.post(
        "/admin/datasets/image/",
        {"action": "pin_split", "_selected_action": [image.pk], "split": target, "apply": "Pin"},
    )
    image.refresh_from_db()
    assert (image.split, image.split_pinned) == (target, True)
    assert admin_client.get("/admin/datasets/image/").status_code == 200
    assert admin_client.get("/admin/datasets/datasetversion/").status_code == 200
    assert admin_client.get("/admin/datasets/importjob/").status_code == 200
    for fmt in ("yolo", "coco", "voc", "labelstudio"):  # every export format has its admin action
        export = admin_client.post(
            "/admin/datasets/datasetversion/",
            {"action": f"export_{fmt}", "_selected_action": [DatasetVersion.objects.get().pk]},
        )
        assert export.status_code == 200 and export["Content-Type"] == "application/zip"
        assert export["Content-Disposition"].endswith(f'-{fmt}.zip"')
    assert Image.objects.count() == 1


def test_a_big_export_is_zipped_by_a_celery_worker_while_the_page_waits(celery_worker_thread, make_user, monkeypatch):
    import time

    from django.test import Client

    from apps.datasets.services import layout
    from tests.builders import make_dataset

    dataset = make_dataset("big")
    make_image(dataset, 1, boxes=[{"class_id": 0, "box": [1, 1, 20, 20]}], status="approved")
    version_freeze(dataset=dataset)
    monkeypatch.setattr(layout, "EXPORT_INLINE_MAX_IMAGES", 0)
    client = Client()
    client.force_login(make_user("eng", "ml_engineer"))
    first = client.get("/datasets/big/versions/1/export.yolo")
    assert first.status_code == 202 and b"Preparing the YOLO export" in first.content
    deadline = time.monotonic() + 60
    response = first
    while response.status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.3)
        response = client.get("/datasets/big/versions/1/export.yolo")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
    assert "data.yaml" in names
