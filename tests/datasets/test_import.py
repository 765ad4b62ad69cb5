"""Importing YOLO (plain and Roboflow's layout) and COCO; hostile archives are refused whole, bad files inside are
reported by name and skipped while the rest imports."""

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.datasets.models import Annotation, Image, ImportJob
from apps.datasets.serializers import ImportJobOutput
from apps.datasets.services import dataset_import
from tests.builders import jpeg, make_dataset, zip_bytes
from tests.datasets.test_ingest import media_files
from vectormlops.errors import DomainError

pytestmark = pytest.mark.django_db

DATA_YAML = b"names:\n  0: vector\n  1: cube\nnc: 2\n"


def write_zip(tmp_path: Path, entries: dict[str, bytes], name="in.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(zip_bytes(entries))
    return path


def test_a_yolo_zip_imports_as_submitted_boxes_in_pixels(dataset, tmp_path):
    path = write_zip(
        tmp_path,
        {
            "data.yaml": DATA_YAML,
            "images/train/a.jpg": jpeg(1),
            "labels/train/a.txt": b"0 0.5 0.5 0.25 0.5\n1 0.25 0.25 0.125 0.25\n",
            "images/val/b.jpg": jpeg(2),
            "labels/val/b.txt": b"",
            "images/val/c.jpg": jpeg(3),  # no label file: stays unlabeled
        },
    )
    report = dataset_import(dataset=dataset, path=path)
    assert (report["format"], report["images_total"], report["imported"], report["annotated"]) == ("yolo", 3, 3, 2)
    statuses = sorted(Image.objects.values_list("status", flat=True))
    assert statuses == ["submitted", "submitted", "unlabeled"]
    boxes = next(a.boxes for a in Annotation.objects.all() if a.boxes)
    assert boxes == [{"class_id": 0, "box": [36.0, 16.0, 24.0, 32.0]}, {"class_id": 1, "box": [18.0, 8.0, 12.0, 16.0]}]
    assert set(Image.objects.values_list("source", flat=True)) == {"import"}
    assert not Image.objects.filter(split_pinned=True).exists()


def test_roboflow_layout_with_approve_and_keep_split(dataset, tmp_path):
    path = write_zip(
        tmp_path,
        {
            "data.yaml": b"train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['vector']\n",
            "train/images/a.jpg": jpeg(1),
            "train/labels/a.txt": b"0 0.5 0.5 0.5 0.5\n",
            "valid/images/b.jpg": jpeg(2),
            "valid/labels/b.txt": b"0 0.5 0.5 0.5 0.5\n",
            "test/images/c.jpg": jpeg(3),
            "test/labels/c.txt": b"0 0.5 0.5 0.5 0.5\n",
        },
    )
    report = dataset_import(dataset=dataset, path=path, approve=True, keep_split=True)
    assert report["imported"] == 3 and report["status"] == "approved"
    splits = {i.sha256: (i.split, i.split_pinned, i.status) for i in Image.objects.all()}
    from hashlib import sha256

    assert splits[sha256(jpeg(1)).hexdigest()] == ("train", True, "approved")
    assert splits[sha256(jpeg(2)).hexdigest()] == ("val", True, "approved")
    assert splits[sha256(jpeg(3)).hexdigest()] == ("test", True, "approved")


def test_a_folder_with_new_class_names_adds_them(tmp_path):
    dataset = make_dataset("fresh", classes=["vector"])
    root = tmp_path / "folder"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data.yaml").write_bytes(b"names: [charger, vector]\n")
    (root / "images" / "a.png").write_bytes(jpeg(1))  # JPEG bytes with a .png name are still a JPEG
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.4 0.4\n")
    report = dataset_import(dataset=dataset, path=root)
    dataset.refresh_from_db()
    assert dataset.classes == ["vector", "charger"] and report["classes_added"] == ["charger"]
    assert [b["class_id"] for b in Annotation.objects.get().boxes] == [1, 0]


def test_a_coco_zip_imports(dataset, tmp_path):
    doc = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 96, "height": 64}, {"id": 8, "file_name": "b.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 10, 20, 20]},
            {"id": 2, "image_id": 7, "category_id": 9, "bbox": [10, 10, 20, 20]},
            {"id": 3, "image_id": 8, "category_id": 3, "bbox": [90, 10, 20, 20]},
        ],
        "categories": [{"id": 3, "name": "cube"}],
    }
    path = write_zip(
        tmp_path, {"annotations.json": json.dumps(doc).encode(), "images/a.jpg": jpeg(1), "images/b.jpg": jpeg(2)}
    )
    report = dataset_import(dataset=dataset, path=path)
    assert report["format"] == "coco" and report["imported"] == 2
    codes = sorted(e["code"] for e in report["label_errors"])
    assert codes == ["box_outside_image", "unknown_class"]
    boxes = sorted((len(a.boxes), a.boxes[0]["class_id"] if a.boxes else None) for a in Annotation.objects.all())
    assert boxes == [(0, None), (1, 1)]


def test_bad_yolo_label_lines_are_reported_per_line_and_the_good_lines_kept(dataset, tmp_path):
    labels = (
        b"0 0.5 0.5 0.2 0.2\n0 1.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n"
        b"0 0.1 0.2 0.3 0.4 0.5 0.6\nx y z w h\n"
    )
    path = write_zip(tmp_path, {"data.yaml": DATA_YAML, "images/a.jpg": jpeg(1), "labels/a.txt": labels})
    report = dataset_import(dataset=dataset, path=path)
    errors = [(e["file"], e["line"], e["code"]) for e in report["label_errors"]]
    assert errors == [
        ("labels/a.txt", 2, "out_of_range"),
        ("labels/a.txt", 3, "unknown_class"),
        ("labels/a.txt", 4, "wrong_field_count"),
        ("labels/a.txt", 5, "wrong_field_count"),
        ("labels/a.txt", 6, "not_a_number"),
    ]
    assert "kept" in report["line_policy"]
    assert len(Annotation.objects.get().boxes) == 1


def test_bad_image_files_inside_are_skipped_by_name_and_the_rest_imports(dataset, tmp_path):
    path = write_zip(
        tmp_path,
        {
            "data.yaml": DATA_YAML,
            "images/good.jpg": jpeg(1),
            "images/text.jpg": b"not an image",
            "images/cut.jpg": jpeg(2)[:200],
            "images/empty.jpg": b"",
        },
    )
    report = dataset_import(dataset=dataset, path=path)
    skipped = sorted((s["file"], s["code"]) for s in report["skipped"])
    assert skipped == [
        ("images/cut.jpg", "truncated_image"),
        ("images/empty.jpg", "empty_file"),
        ("images/text.jpg", "not_an_image"),
    ]
    assert report["imported"] == 1 and Image.objects.count() == 1


@pytest.mark.parametrize("entry", ["../evil.jpg", "/etc/evil.jpg", "images/../../evil.jpg", "..\\evil.jpg"])
def test_zip_slip_is_refused_whole_and_nothing_is_written(dataset, tmp_path, entry):
    path = write_zip(tmp_path, {"data.yaml": DATA_YAML, "images/good.jpg": jpeg(1), entry: jpeg(2)})
    with pytest.raises(DomainError) as caught:
        dataset_import(dataset=dataset, path=path)
    assert (caught.value.code, caught.value.status_code) == ("zip_slip", 400)
    assert Image.objects.count() == 0 and media_files() == []
    assert not (tmp_path.parent / "evil.jpg").exists()


def test_a_zip_bomb_is_refused_by_its_uncompressed_size(dataset, tmp_path, settings):
    settings.MAX_IMPORT_UNCOMPRESSED_BYTES = 1024 * 1024
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images/good.jpg", jpeg(1))
        archive.writestr("labels/bomb.txt", b"0" * (8 * 1024 * 1024))  # 8 MB of zeros deflate to ~8 KB
    path = tmp_path / "bomb.zip"
    path.write_bytes(buffer.getvalue())
    assert path.stat().st_size < 100_000
    with pytest.raises(DomainError) as caught:
        dataset_import(dataset=dataset, path=path)
    assert (caught.value.code, caught.value.status_code) == ("archive_too_large", 413)
    assert Image.objects.count() == 0 and media_files() == []


def test_a_zip_that_lies_about_its_sizes_is_stopped_while_extracting(dataset, tmp_path, settings):
    settings.MAX_IMPORT_UNCOMPRESSED_BYTES = 1024 * 1024
    path = write_zip(tmp_path, {"images/a.jpg": jpeg(1), "labels/big.txt": b"1" * (2 * 1024 * 1024)})
    raw = bytearray(path.read_bytes())
    # Rewrite the declared uncompressed size of big.txt (local header and central directory) to 10 bytes.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (at := raw.find(signature, start)) != -1:
            name_len_at = at + (26 if signature == b"PK\x03\x04" else 28)
            name_len = int.from_bytes(raw[name_len_at : name_len_at + 2], "little")
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if raw[name_at : name_at + name_len] == b"labels/big.txt":
                raw[at + offset : at + offset + 4] = (10).to_bytes(4, "little")
            start = at + 4
    path.write_bytes(bytes(raw))
    with pytest.raises(DomainError) as caught:
        dataset_import(dataset=dataset, path=path)
    assert caught.value.code in ("archive_too_large", "bad_archive")
    assert Image.objects.count() == 0


def test_not_a_zip_and_an_unknown_layout_are_errors(dataset, tmp_path):
    not_zip = tmp_path / "x.zip"
    not_zip.write_bytes(b"hello")
    with pytest.raises(DomainError) as caught:
        dataset_import(dataset=dataset, path=not_zip)
    assert caught.value.code == "bad_archive"
    with pytest.raises(DomainError) as caught:
        dataset_import(dataset=dataset, path=write_zip(tmp_path, {"readme.txt": b"hi"}, "y.zip"))
    assert caught.value.code == "unknown_layout"


def test_the_management_command_imports_and_prints_the_report(dataset, tmp_path, capsys):
    path = write_zip(tmp_path, {"data.yaml": DATA_YAML, "images/a.jpg": jpeg(1), "labels/a.txt": b"0 .5 .5 .2 .2\n"})
    call_command("import_dataset", "robots", str(path), "--approve", "--keep-split")
    report = json.loads(capsys.readouterr().out)
    assert report["imported"] == 1 and Image.objects.get().status == "approved"
    # the same report the API shows (the internal undo list stays in the row)
    job = ImportJob.objects.get(pk=report["job"])
    assert "undo" not in report and job.report["undo"]
    assert {k: v for k, v in report.items() if k not in ("job", "job_status")} == json.loads(
        json.dumps(ImportJobOutput(job).data["report"], default=str)
    )
    with pytest.raises(CommandError, match="unknown_dataset"):
        call_command("import_dataset", "nope", str(path))


def test_an_import_job_runs_in_a_real_celery_worker(celery_worker_thread, make_user, tmp_path):
    import time

    from django.test import Client

    dataset = make_dataset("jobs")
    engineer = make_user("eng", "ml_engineer")
    client = Client()
    client.force_login(engineer)
    archive = zip_bytes(
        {"data.yaml": DATA_YAML, "images/a.jpg": jpeg(1), "images/b.jpg": b"junk", "labels/a.txt": b"0 .5 .5 .2 .2\n"}
    )
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        "/datasets/jobs/import", {"archive": SimpleUploadedFile("set.zip", archive), "approve": "on"}
    )
    assert response.status_code == 302
    job = ImportJob.objects.get()
    deadline = time.monotonic() + 60
    while job.status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert (job.done, job.total) == (2, 2) and job.report["imported"] == 1
    assert [s["file"] for s in job.report["skipped"]] == ["images/b.jpg"]
    page = client.get(response["Location"])
    assert page.status_code == 200 and b"images/b.jpg" in page.content
    assert Image.objects.filter(dataset=dataset, status="approved").count() == 1


def test_the_import_api_queues_a_job_that_a_worker_runs(celery_worker_thread, api_as, make_user):
    import time

    from django.core.files.uploadedfile import SimpleUploadedFile

    make_dataset("api")
    engineer = make_user("eng2", "ml_engineer")
    archive = zip_bytes({"data.yaml": DATA_YAML, "images/val/a.jpg": jpeg(5), "labels/val/a.txt": b"1 .5 .5 .2 .2\n"})
    client = api_as(engineer)
    refused = api_as(make_user("ann2", "annotator")).post(
        "/api/v1/datasets/api/imports", {"archive": SimpleUploadedFile("a.zip", archive)}, format="multipart"
    )
    assert refused.status_code == 403
    response = client.post(
        "/api/v1/datasets/api/imports",
        {"archive": SimpleUploadedFile("a.zip", archive), "keep_split": "true"},
        format="multipart",
    )
    assert response.status_code == 202, response.json()
    job_url = f"/api/v1/imports/{response.json()['id']}"
    deadline = time.monotonic() + 60
    body = response.json()
    while body["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        body = client.get(job_url).json()
    assert body["status"] == "succeeded" and body["report"]["imported"] == 1 and body["keep_split"] is True
    # what a rollback needs stays inside: the API shows the report without it
    assert "undo" not in body["report"] and ImportJob.objects.get().report["undo"]
    image = Image.objects.get(dataset__slug="api")
    assert (image.split, image.split_pinned, image.status) == ("val", True, "submitted")
    not_zip = client.post(
        "/api/v1/datasets/api/imports", {"archive": SimpleUploadedFile("a.tar", b"x")}, format="multipart"
    )
    assert not_zip.status_code == 400 and not_zip.json()["error"]["code"] == "not_a_zip"


def test_the_sweeper_fails_running_jobs_whose_heartbeat_stopped_and_leaves_beating_ones(dataset):
    from datetime import timedelta

    from django.utils import timezone

    from apps.datasets.services import import_jobs_sweep

    now = timezone.now()

    def running(name, **fields):
        return ImportJob.objects.create(dataset=dataset, upload_name=name, status="running", total=9, done=4, **fields)

    beating = running("imports/a.zip", started_at=now - timedelta(hours=1), heartbeat_at=now - timedelta(seconds=5))
    silent = running("imports/b.zip", started_at=now - timedelta(hours=1), heartbeat_at=now - timedelta(minutes=5))
    before_heartbeats = running("imports/c.zip", started_at=now - timedelta(minutes=5))
    command_run = running("", started_at=now - timedelta(hours=1), heartbeat_at=now - timedelta(minutes=5))
    finished = ImportJob.objects.create(dataset=dataset, upload_name="imports/d.zip", status="succeeded")

    result = import_jobs_sweep(heartbeat_timeout_s=60, now=now)

    assert result == {"republished": [], "failed": sorted([silent.pk, before_heartbeats.pk, command_run.pk])}
    statuses = dict(ImportJob.objects.values_list("pk", "status"))
    assert statuses[beating.pk] == "running" and statuses[finished.pk] == "succeeded"
    silent.refresh_from_db()
    assert silent.status == "failed" and silent.finished_at == now
    assert "no heartbeat for 300 s, after 4 of 9 files" in silent.error
