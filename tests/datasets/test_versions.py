"""Frozen versions: what they take, that they never change, their hash; materialising and exporting them."""

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from apps.datasets.models import Annotation, DatasetVersion, Image, VersionItem
from apps.datasets.services import (
    annotation_set,
    dataset_import,
    version_export_zip,
    version_freeze,
    version_materialize,
)
from tests.builders import make_dataset, make_image
from vectormlops.errors import ValidationFailed

pytestmark = pytest.mark.django_db

BOX_A = {"class_id": 0, "box": [10, 8, 30, 20]}
BOX_B = {"class_id": 1, "box": [50, 30, 20, 20]}


@pytest.fixture
def labelled(dataset):
    """Three approved images (one without boxes), one submitted, one unlabeled."""
    return [
        make_image(dataset, 1, boxes=[BOX_A], status="approved"),
        make_image(dataset, 2, boxes=[BOX_A, BOX_B], status="approved"),
        make_image(dataset, 3, boxes=[], status="approved"),
        make_image(dataset, 4, boxes=[BOX_B], status="submitted"),
        make_image(dataset, 5),
    ]


def test_a_freeze_takes_the_approved_annotations_and_later_edits_do_not_change_it(dataset, labelled):
    version = version_freeze(dataset=dataset, note="first")
    assert version.number == 1 and version.image_count == 3
    assert version.counts["boxes"] == {"vector": 2, "cube": 1} and sum(version.counts["images"].values()) == 3
    snapshot = {i.image_id: i.boxes for i in VersionItem.objects.filter(version=version)}
    annotation_set(image=labelled[0], boxes=[BOX_B], expected_version=1)
    annotation_set(image=labelled[3], boxes=[BOX_B], status="approved")
    assert {i.image_id: i.boxes for i in VersionItem.objects.filter(version=version)} == snapshot
    second = version_freeze(dataset=dataset)
    assert second.number == 2 and second.image_count == 4 and second.manifest_sha256 != version.manifest_sha256


def test_a_freeze_with_no_change_returns_the_latest_version_and_says_so(dataset, labelled):
    first = version_freeze(dataset=dataset)
    again = version_freeze(dataset=dataset, note="again")
    assert first.created and not again.created
    assert again.pk == first.pk and DatasetVersion.objects.filter(dataset=dataset).count() == 1
    annotation_set(image=labelled[0], boxes=[BOX_A, BOX_B])
    changed = version_freeze(dataset=dataset)
    assert changed.created and changed.number == 2 and changed.manifest_sha256 != first.manifest_sha256
    # Back to the first content: the latest version differs, so it is a new version with the first one's hash.
    annotation_set(image=labelled[0], boxes=[BOX_A])
    back = version_freeze(dataset=dataset)
    assert back.created and back.number == 3 and back.manifest_sha256 == first.manifest_sha256


def test_the_freeze_api_answers_201_for_a_new_version_and_200_unchanged_for_none(api_as, ml_engineer, labelled):
    client = api_as(ml_engineer)
    url = f"/api/v1/datasets/{labelled[0].dataset.slug}/versions"
    created = client.post(url, {"note": "first"}, format="json")
    assert created.status_code == 201 and created.json()["unchanged"] is False
    same = client.post(url, {"note": "again"}, format="json")
    assert same.status_code == 200
    assert same.json()["unchanged"] is True and same.json()["id"] == created.json()["id"]
    assert same.json()["note"] == "first"


def test_without_review_submitted_annotations_are_frozen_too(dataset, labelled):
    dataset.review_required = False
    dataset.save()
    assert version_freeze(dataset=dataset).image_count == 4


def test_nothing_approved_is_nothing_to_freeze(dataset):
    make_image(dataset, 1)
    with pytest.raises(ValidationFailed) as caught:
        version_freeze(dataset=dataset)
    assert caught.value.code == "nothing_to_freeze" and not DatasetVersion.objects.exists()


def test_materialize_links_the_images_and_writes_yolo_labels(dataset, labelled, tmp_path):
    version = version_freeze(dataset=dataset)
    data_yaml = version_materialize(version=version, dest_dir=tmp_path / "out")
    config = yaml.safe_load(data_yaml.read_text())
    assert config["names"] == {0: "vector", 1: "cube"} and config["nc"] == 2
    assert Path(config["path"]) == (tmp_path / "out").resolve()
    image = Image.objects.get(pk=labelled[1].pk)
    linked = tmp_path / "out" / "images" / image.split / f"{image.sha256}.jpg"
    assert linked.is_file() and (linked.stat().st_nlink >= 2 or linked.is_symlink())
    label = (tmp_path / "out" / "labels" / image.split / f"{image.sha256}.txt").read_text().split("\n")
    cls, cx, cy, w, h = label[0].split()
    assert cls == "0" and float(cx) == pytest.approx(25 / 96, abs=1e-5) and float(h) == pytest.approx(20 / 64, abs=1e-5)
    assert label[1].startswith("1 ")
    empty = Image.objects.get(pk=labelled[2].pk)
    assert (tmp_path / "out" / "labels" / empty.split / f"{empty.sha256}.txt").read_text() == ""
    copied = version_materialize(version=version, dest_dir=tmp_path / "copy", link=False).parent
    assert (copied / "images" / image.split / f"{image.sha256}.jpg").stat().st_nlink == 1


def test_export_round_trips_through_import_in_yolo_and_coco(dataset, labelled, tmp_path):
    version = version_freeze(dataset=dataset)
    for fmt in ("yolo", "coco"):
        path = version_export_zip(version=version, fmt=fmt)
        try:
            names = zipfile.ZipFile(path).namelist()
            if fmt == "yolo":
                assert "data.yaml" in names and any(n.startswith("labels/") for n in names)
            else:
                doc_name = next(n for n in names if n.endswith("_annotations.coco.json"))
                doc = json.loads(zipfile.ZipFile(path).read(doc_name))
                assert doc["categories"][0]["name"] == "vector"
            target = make_dataset(f"copy-{fmt}", classes=["vector", "cube"])
            report = dataset_import(dataset=target, path=path, approve=True, keep_split=True)
        finally:
            path.unlink()
        assert report["format"] == fmt and report["imported"] == 3 and report["label_errors"] == []
        copy = version_freeze(dataset=target)
        assert copy.manifest_sha256 == version.manifest_sha256, fmt
    with pytest.raises(ValidationFailed):
        version_export_zip(version=version, fmt="tiff")


def test_the_zip_of_an_export_holds_the_stored_bytes(dataset, labelled):
    version = version_freeze(dataset=dataset)
    path = version_export_zip(version=version, fmt="yolo")
    image = Image.objects.get(pk=labelled[0].pk)
    with zipfile.ZipFile(path) as archive:
        data = archive.read(f"images/{image.split}/{image.sha256}.jpg")
    path.unlink()
    from django.core.files.storage import default_storage

    assert data == default_storage.open(image.storage_path).read()
    assert Annotation.objects.count() == 4


def test_materializing_into_a_used_folder_leaves_no_stray_files(dataset, labelled, tmp_path):
    version = version_freeze(dataset=dataset)
    (tmp_path / "out" / "images" / "train").mkdir(parents=True)
    stray = tmp_path / "out" / "images" / "train" / "from-another-version.jpg"
    stray.write_bytes(b"old")
    version_materialize(version=version, dest_dir=tmp_path / "out")
    assert not stray.exists()
    assert sum(1 for _ in (tmp_path / "out" / "images").rglob("*.jpg")) == version.image_count
