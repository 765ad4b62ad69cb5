"""Every layout the importer reads, from exports written the way each tool writes them: every box arrives (within
one pixel), splits are kept, non-detection files are noted, classes are added only when a box uses them; the
duplicate rule's report; the rollback; the time limit; an unknown layout names every layout looked for."""

import json
import time
from hashlib import sha256
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from apps.datasets import formats
from apps.datasets.models import Annotation, Dataset, Image, ImportJob
from apps.datasets.services import dataset_import, import_job_run_path, import_rollback, version_freeze
from tests.builders import jpeg, make_dataset, make_image, zip_bytes
from tests.datasets import format_fixtures as fx
from vectormlops.errors import DomainError, ValidationFailed

pytestmark = pytest.mark.django_db


def write_zip(tmp_path: Path, entries: dict[str, bytes], name="in.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(zip_bytes(entries))
    return path


def boxes_by_image(dataset) -> dict[str, list]:
    """sha256 -> sorted [(class name, box)] of a dataset's current annotations."""
    classes = Dataset.objects.get(pk=dataset.pk).classes
    result = {}
    for image in Image.objects.filter(dataset=dataset).select_related("annotation"):
        boxes = getattr(image, "annotation", None)
        result[image.sha256] = sorted((classes[b["class_id"]], b["box"]) for b in (boxes.boxes if boxes else []))
    return result


def assert_expected_boxes(dataset) -> None:
    found = boxes_by_image(dataset)
    for name, data in fx.IMAGES.items():
        got = found[sha256(data).hexdigest()]
        want = sorted(fx.EXPECTED[name])
        assert [label for label, _ in got] == [label for label, _ in want], name
        for (_, box), (_, expected) in zip(got, want, strict=True):
            assert max(abs(u - v) for u, v in zip(box, expected, strict=True)) <= 1.0, (name, box, expected)


@pytest.mark.parametrize("layout", sorted(fx.LAYOUTS))
def test_each_layout_imports_every_box_through_the_management_command(layout, tmp_path, capsys):
    dataset = make_dataset("target", classes=["cube"])
    path = write_zip(tmp_path, fx.LAYOUTS[layout]())
    call_command("import_dataset", "target", str(path), "--keep-split")
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == fx.KINDS[layout] and report["job_status"] == "succeeded"
    assert (report["images_total"], report["imported"], report["annotated"]) == (3, 3, 3), report
    assert report["label_errors"] == [] and report["skipped"] == []
    assert_expected_boxes(dataset)
    assert sorted(Dataset.objects.get(pk=dataset.pk).classes) == ["cube", "vector"]
    assert sorted(f["result"] for f in report["files"]) == ["imported"] * 3
    if layout != "labelstudio":  # Label Studio has no splits
        splits = dict(Image.objects.values_list("sha256", "split"))
        assert {n: splits[sha256(d).hexdigest()] for n, d in fx.IMAGES.items()} == fx.SPLITS


def test_the_standard_coco_layout_notes_the_files_that_are_not_detection(tmp_path):
    dataset = make_dataset("coco", classes=["cube"])
    report = dataset_import(dataset=dataset, path=write_zip(tmp_path, fx.coco_standard()))
    notes = {n["file"]: n["note"] for n in report["notes"]}
    assert "keypoint" in notes["annotations/person_keypoints_train.json"]
    assert "caption" in notes["annotations/captions_train.json"]
    assert "panoptic" in notes["annotations/panoptic_train.json"]
    assert "crowd" in notes["annotations/instances_train.json"]
    assert report["imported"] == 3 and "person" not in Dataset.objects.get(pk=dataset.pk).classes


def test_a_folder_imports_like_its_zip(tmp_path):
    dataset = make_dataset("folder", classes=["cube"])
    for name, data in fx.cvat_xml().items():
        (tmp_path / "export" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "export" / name).write_bytes(data)
    report = dataset_import(dataset=dataset, path=tmp_path / "export")
    assert report["format"] == "cvat" and report["imported"] == 3
    assert any("polygon" in n["note"] for n in report["notes"])  # only boxes are imported, and it says so
    assert_expected_boxes(dataset)


def test_every_layout_imports_through_the_api_and_a_real_worker(celery_worker_thread, api_as, make_user):
    engineer = api_as(make_user("eng", "ml_engineer"))
    for layout in ("darknet", "coco_standard", "voc", "labelstudio", "cvat"):
        dataset = make_dataset(f"api-{layout}".replace("_", "-"), classes=["cube"])
        archive = SimpleUploadedFile(f"{layout}.zip", zip_bytes(fx.LAYOUTS[layout]()))
        response = engineer.post(f"/api/v1/datasets/{dataset.slug}/imports", {"archive": archive}, format="multipart")
        assert response.status_code == 202, response.json()
        body, deadline = response.json(), time.monotonic() + 60
        while body["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.2)
            body = engineer.get(f"/api/v1/imports/{body['id']}").json()
        assert body["status"] == "succeeded", body
        assert body["report"]["format"] == fx.KINDS[layout] and body["report"]["imported"] == 3, layout
        assert_expected_boxes(dataset)
        assert Dataset.objects.get(pk=dataset.pk).classes == ["cube", "vector"]  # appended once used, never reordered


def test_an_unknown_layout_names_every_layout_looked_for(tmp_path):
    dataset = make_dataset("unknown", classes=["vector"])
    with pytest.raises(DomainError) as caught:
        dataset_import(dataset=dataset, path=write_zip(tmp_path, {"notes/readme.md": b"# hi", "a.csv": b"1,2"}))
    assert caught.value.code == "unknown_layout"
    for description in formats.LAYOUTS.values():
        assert description in caught.value.message
    assert caught.value.details["looked_for"] == list(formats.LAYOUTS.values())


def test_an_import_that_imports_nothing_leaves_the_classes_alone(tmp_path):
    """A data.yaml with 3,000 names and images that are all broken adds no class."""
    dataset = make_dataset("junk", classes=["vector"])
    names = "\n".join(f"  {i}: junk{i}" for i in range(3000))
    entries = {
        "data.yaml": f"names:\n{names}\n".encode(),
        "images/a.jpg": b"not an image",
        "labels/a.txt": b"7 .5 .5 .1 .1\n",
    }
    report = dataset_import(dataset=dataset, path=write_zip(tmp_path, entries))
    assert report["imported"] == 0 and [f["result"] for f in report["files"]] == ["skipped"]
    assert Dataset.objects.get(pk=dataset.pk).classes == ["vector"] and report["classes_added"] == []
    coco = fx.roboflow_coco()  # the placeholder category 0 no box uses is never added either
    report = dataset_import(dataset=dataset, path=write_zip(tmp_path, coco, "coco.zip"))
    assert report["imported"] == 3 and "robots-3xk2" not in Dataset.objects.get(pk=dataset.pk).classes


def test_a_box_outside_its_image_adds_no_class(tmp_path):
    dataset = make_dataset("outside", classes=["vector"])
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 96, "height": 64}],
        "categories": [{"id": 1, "name": "ghost"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [500, 500, 10, 10]}],
    }
    report = dataset_import(
        dataset=dataset, path=write_zip(tmp_path, {"ann.json": json.dumps(doc).encode(), "a.jpg": jpeg(1)})
    )
    assert [e["code"] for e in report["label_errors"]] == ["box_outside_image"]
    assert Dataset.objects.get(pk=dataset.pk).classes == ["vector"]


def test_byte_identical_images_follow_the_duplicate_rule_and_the_report_says_so(tmp_path):
    """a.jpg, a_copy.jpg, a_more.jpg and a_other.jpg are the same bytes: the copy agrees, the 'more' one adds a
    box (merged: its fuller set is kept), the 'other' one disagrees (conflict: listed, not used)."""
    dataset = make_dataset("dups", classes=["vector", "cube"])
    same = jpeg(1)
    entries = {
        "data.yaml": b"names: [vector, cube, dock]\n",
        "images/a.jpg": same,
        "labels/a.txt": b"0 0.5 0.5 0.25 0.25\n",
        "images/a_copy.jpg": same,
        "labels/a_copy.txt": b"0 0.5 0.5 0.25 0.25\n",
        "images/a_more.jpg": same,
        "labels/a_more.txt": b"0 0.5 0.5 0.25 0.25\n1 0.2 0.2 0.1 0.1\n",
        "images/a_other.jpg": same,
        "labels/a_other.txt": b"2 0.8 0.8 0.1 0.1\n",
        "images/b.jpg": jpeg(2),
    }
    report = dataset_import(dataset=dataset, path=write_zip(tmp_path, entries))
    files = {f["file"]: f for f in report["files"]}
    assert files["images/a.jpg"]["result"] == "imported"
    assert (files["images/a_copy.jpg"]["result"], files["images/a_copy.jpg"]["duplicate_of"]) == (
        "duplicate",
        "images/a.jpg",
    )
    assert files["images/a_more.jpg"]["result"] == "merged"
    other = files["images/a_other.jpg"]
    assert (other["result"], other["duplicate_of"]) == ("conflict", "images/a_more.jpg")
    assert other["boxes_not_used"] == [{"label": "dock", "box": [72.0, 48.0, 9.6, 6.4]}]
    assert Dataset.objects.get(pk=dataset.pk).classes == ["vector", "cube"]  # only the conflicting file used "dock"
    assert (report["imported"], report["merged"], report["conflicts"], report["duplicates"]) == (2, 1, 1, 3)
    assert "first file" in report["duplicate_rule"]
    kept = Annotation.objects.get(image__sha256=sha256(same).hexdigest()).boxes
    assert sorted(b["class_id"] for b in kept) == [0, 1]  # the fuller set of a_more.jpg


def test_an_import_never_overwrites_boxes_saved_in_the_dataset(tmp_path):
    dataset = make_dataset("kept", classes=["vector", "cube"])
    image = make_image(dataset, 1, boxes=[{"class_id": 0, "box": [1, 1, 10, 10]}])
    entries = {
        "data.yaml": b"names: [vector, cube, dock]\n",
        "images/a.jpg": jpeg(1),
        "labels/a.txt": b"2 .5 .5 .2 .2\n",
    }
    report = dataset_import(dataset=dataset, path=write_zip(tmp_path, entries))
    assert report["files"][0]["result"] == "already_in_dataset" and "kept" in report["files"][0]["message"]
    assert Annotation.objects.get(image=image).boxes == [{"class_id": 0, "box": [1.0, 1.0, 10.0, 10.0]}]
    assert Dataset.objects.get(pk=dataset.pk).classes == ["vector", "cube"]  # "dock" was used by no saved box


def test_an_import_rolls_back_as_a_whole(tmp_path, capsys, django_capture_on_commit_callbacks):
    dataset = make_dataset("undo", classes=["vector"])
    before = make_image(dataset, 50)  # an unlabelled image the import labels
    untouched = make_image(dataset, 51, boxes=[{"class_id": 0, "box": [1, 1, 5, 5]}], status="approved")
    entries = fx.cvat_xml()
    entries["images/Train/extra.jpg"] = jpeg(50)  # the same bytes as `before`
    entries["annotations.xml"] = entries["annotations.xml"].replace(
        b"</annotations>",
        b'<image id="9" name="extra.jpg" subset="Train" width="96" height="64">'
        b'<box label="cube" xtl="2" ytl="2" xbr="20" ybr="20" occluded="0"/></image></annotations>',
    )
    job = import_job_run_path(dataset=dataset, path=write_zip(tmp_path, entries))
    assert job.status == "succeeded" and job.report["imported"] == 3 and job.report["classes_added"] == ["cube"]
    assert Annotation.objects.get(image=before).boxes != []
    stored = [i.storage_path for i in Image.objects.filter(dataset=dataset).exclude(pk__in=[before.pk, untouched.pk])]
    assert len(stored) == 3 and all(default_storage.exists(name) for name in stored)

    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_dataset", "undo", "--rollback", str(job.pk))
    rollback = json.loads(capsys.readouterr().out)
    assert (rollback["images_removed"], rollback["labels_cleared"], rollback["kept"]) == (3, 1, [])
    assert rollback["classes_removed"] == ["cube"]
    assert set(Image.objects.filter(dataset=dataset).values_list("pk", flat=True)) == {before.pk, untouched.pk}
    assert Annotation.objects.get(image=before).boxes == []
    assert Image.objects.get(pk=before.pk).status == before.status
    assert Annotation.objects.get(image=untouched).boxes == [{"class_id": 0, "box": [1.0, 1.0, 5.0, 5.0]}]
    assert Dataset.objects.get(pk=dataset.pk).classes == ["vector"]
    assert not any(default_storage.exists(name) for name in stored)
    with pytest.raises(CommandError, match="already_rolled_back"):
        call_command("import_dataset", "undo", "--rollback", str(job.pk))


def test_a_rollback_keeps_what_was_worked_on_or_frozen_since(tmp_path):
    dataset = make_dataset("undo2", classes=["cube"], review_required=False)
    job = import_job_run_path(dataset=dataset, path=write_zip(tmp_path, fx.pascal_voc()))
    image_a = Image.objects.get(sha256=sha256(fx.IMAGES["a"]).hexdigest())
    version_freeze(dataset=dataset)  # a, b, c are frozen now
    job = import_rollback(job=ImportJob.objects.get(pk=job.pk))
    rollback = job.report["rollback"]
    assert rollback["images_removed"] == 0 and len(rollback["kept"]) == 3
    assert {k["reason"] for k in rollback["kept"]} == {"a frozen version holds it"}
    assert Image.objects.filter(pk=image_a.pk).exists() and rollback["classes_removed"] == []


def test_the_api_rolls_an_import_back(api_as, make_user, tmp_path):
    dataset = make_dataset("undo3", classes=["cube"])
    job = import_job_run_path(dataset=dataset, path=write_zip(tmp_path, fx.label_studio()))
    annotator = api_as(make_user("ann", "annotator"))
    assert annotator.post(f"/api/v1/imports/{job.pk}/rollback").status_code == 403
    engineer = api_as(make_user("eng", "ml_engineer"))
    response = engineer.post(f"/api/v1/imports/{job.pk}/rollback")
    assert response.status_code == 200, response.json()
    assert response.json()["report"]["rollback"]["images_removed"] == 3 and Image.objects.count() == 0
    again = engineer.post(f"/api/v1/imports/{job.pk}/rollback")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_rolled_back"


def test_an_import_past_its_time_limit_is_stopped(tmp_path, settings):
    dataset = make_dataset("slow", classes=["cube"])
    settings.IMPORT_TIME_LIMIT_S = 0
    job = import_job_run_path(dataset=dataset, path=write_zip(tmp_path, fx.roboflow_yolo()))
    assert job.status == "failed" and "time limit" in job.error
    assert Image.objects.count() == 0  # stopped while unpacking: nothing was imported
    assert job.report["error"]["code"] == "import_timeout"


def test_an_import_stopped_part_way_keeps_its_report_and_rolls_back(tmp_path, monkeypatch):
    """The limit passes after the first image (simulated: the clock is not worth waiting for in a test)."""
    from apps.datasets.formats.common import Deadline

    def check(self):
        if Image.objects.exists():
            raise ValidationFailed("The import ran past its time limit.", code="import_timeout")

    monkeypatch.setattr(Deadline, "check", check)
    dataset = make_dataset("partway", classes=["cube"])
    job = import_job_run_path(dataset=dataset, path=write_zip(tmp_path, fx.pascal_voc()))
    assert job.status == "failed" and job.report["error"]["code"] == "import_timeout"
    assert job.report["imported"] == 1 and len(job.report["files"]) == 1 and Image.objects.count() == 1
    job = import_rollback(job=job)
    assert job.report["rollback"]["images_removed"] == 1 and Image.objects.count() == 0
    assert Dataset.objects.get(pk=dataset.pk).classes == ["cube"]


def test_a_job_redelivered_after_its_worker_died_still_rolls_back_whole(tmp_path, monkeypatch):
    """The worker dies after the first image (kill -9: the job stays 'running', the archive stays in storage);
    Celery redelivers the task, which imports again once the job's heartbeat is silent; the images of the first run
    count as the job's own. What the killed run had not committed (its current batch) is gone with it."""
    from datetime import timedelta

    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from apps.datasets.formats.common import Deadline
    from apps.datasets.services import import_archive, import_job_create
    from apps.datasets.tasks import dataset_import_task

    class Killed(BaseException):
        pass

    def die_after_the_first_image(self):
        if Image.objects.exists():
            raise Killed

    dataset = make_dataset("redelivered", classes=["cube"])
    archive = zip_bytes(fx.cvat_yolo11())
    job = import_job_create(dataset=dataset, fileobj=ContentFile(archive), filename="set.zip")
    monkeypatch.setattr(import_archive, "BATCH_FILES", 1)  # each file commits on its own
    monkeypatch.setattr(Deadline, "check", die_after_the_first_image)
    with pytest.raises(Killed):
        dataset_import_task(job.pk)
    monkeypatch.undo()
    job.refresh_from_db()
    assert job.status == "running" and [entry["image"] for entry in job.report["undo"]] == [Image.objects.get().pk]
    if not default_storage.exists(job.upload_name):
        default_storage.save(job.upload_name, ContentFile(archive))
    # a second delivery while the job's process still beats does nothing
    assert dataset_import_task(job.pk) == "skipped"
    # once its heartbeat has been silent for the timeout, the redelivered task takes the job over
    silent = timezone.now() - timedelta(seconds=settings.IMPORT_HEARTBEAT_TIMEOUT_S + 1)
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=silent)
    assert dataset_import_task(job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.report["imported"] == 3 and len(job.report["undo"]) == 3
    job = import_rollback(job=job)
    assert job.report["rollback"]["images_removed"] == 3 and Image.objects.count() == 0


def test_xml_with_a_dtd_is_refused(tmp_path):
    dataset = make_dataset("xml", classes=["cube"])
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b"<annotation><filename>a.jpg</filename><object><name>&lol2;</name></object></annotation>"
    )
    with pytest.raises(DomainError) as caught:
        dataset_import(dataset=dataset, path=write_zip(tmp_path, {"a.xml": bomb, "a.jpg": jpeg(1)}))
    assert caught.value.code == "invalid_xml" and Image.objects.count() == 0
