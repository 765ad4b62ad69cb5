"""A frozen version exported to each format and imported back gives the same images, splits and boxes (within one
pixel; YOLO, COCO and Label Studio exactly enough that the frozen manifest is identical). The zips look the way the
tools that read them expect."""

import json
import xml.etree.ElementTree as ET
import zipfile

import pytest

from apps.datasets.formats.writers import EXPORT_FORMATS
from apps.datasets.models import Annotation, Image
from apps.datasets.services import dataset_import, version_export_zip, version_freeze
from tests.builders import make_dataset, make_image
from vectormlops.errors import ValidationFailed

pytestmark = pytest.mark.django_db


@pytest.fixture
def version():
    """Four images over the splits with awkward boxes: fractional, touching the border, none at all."""
    dataset = make_dataset("source", classes=["vector", "cube", "charger"], review_required=False)
    boxes = [
        [{"class_id": 0, "box": [10.25, 8.5, 30.125, 20.75]}, {"class_id": 2, "box": [50, 30, 46, 34]}],
        [{"class_id": 1, "box": [0, 0, 96, 64]}],
        [],
        [{"class_id": 2, "box": [1.333, 2.667, 3.5, 4.25]}],
    ]
    for seed, image_boxes in enumerate(boxes):
        make_image(dataset, 70 + seed, boxes=image_boxes, status="submitted")
    splits = ["train", "val", "test", "train"]
    for image, split in zip(Image.objects.order_by("id"), splits, strict=True):
        image.split = split
        image.save(update_fields=["split"])
    return version_freeze(dataset=dataset)


def contents(dataset) -> dict:
    """sha256 -> (split, sorted [(class name, box)])."""
    classes = dataset.__class__.objects.get(pk=dataset.pk).classes
    result = {}
    for image in Image.objects.filter(dataset=dataset):
        boxes = Annotation.objects.filter(image=image).values_list("boxes", flat=True).first() or []
        result[image.sha256] = (image.split, sorted((classes[b["class_id"]], b["box"]) for b in boxes))
    return result


@pytest.mark.parametrize("fmt", sorted(EXPORT_FORMATS))
def test_each_export_format_imports_back_unchanged(version, fmt, tmp_path):
    path = version_export_zip(version=version, fmt=fmt)
    try:
        target = make_dataset(f"back-{fmt}", classes=["vector"], review_required=False)
        report = dataset_import(dataset=target, path=path, keep_split=True)
    finally:
        path.unlink()
    assert report["format"] == fmt and report["label_errors"] == [] and report["skipped"] == []
    assert report["imported"] == 4 and report["notes"] == []
    source, back = contents(version.dataset), contents(target)
    assert source.keys() == back.keys()
    for sha, (split, boxes) in source.items():
        back_split, back_boxes = back[sha]
        assert back_split == split
        assert [label for label, _ in back_boxes] == [label for label, _ in boxes]
        for (_, box), (_, other) in zip(boxes, back_boxes, strict=True):
            assert max(abs(u - v) for u, v in zip(box, other, strict=True)) <= 1.0, (fmt, box, other)
    if fmt != "voc":  # VOC writes corners to 0.01 px; the others keep every digit the database has
        assert back == source


def test_the_exports_look_the_way_their_tools_expect(version):
    names = {}
    for fmt in EXPORT_FORMATS:
        path = version_export_zip(version=version, fmt=fmt)
        with zipfile.ZipFile(path) as archive:
            names[fmt] = set(archive.namelist())
            if fmt == "voc":
                xml_name = next(n for n in names[fmt] if n.startswith("Annotations/"))
                root = ET.fromstring(archive.read(xml_name))
                assert root.tag == "annotation" and root.find("size/width").text == "96"
                assert set(archive.read("ImageSets/Main/train.txt").decode().split()) <= {
                    n.split("/")[1].split(".")[0] for n in names[fmt] if n.startswith("JPEGImages/")
                }
            if fmt == "labelstudio":
                tasks = json.loads(archive.read("result.json"))
                assert len(tasks) == 4 and all(
                    t["data"]["image"].startswith("/data/local-files/?d=images/") for t in tasks
                )
                result = next(r for t in tasks for r in t["annotations"][0]["result"])
                assert result["type"] == "rectanglelabels" and result["value"]["rectanglelabels"][0] in version.classes
        path.unlink()
    assert "data.yaml" in names["yolo"] and any(n.startswith("labels/val/") for n in names["yolo"])
    assert {"train/_annotations.coco.json", "val/_annotations.coco.json"} <= names["coco"]
    with pytest.raises(ValidationFailed) as caught:
        version_export_zip(version=version, fmt="tiff")
    assert caught.value.details["formats"] == list(EXPORT_FORMATS)
