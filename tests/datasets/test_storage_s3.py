"""The same ingestion and export paths against an S3 endpoint (moto's server mode on 127.0.0.1): storage is reached
only through Django's storage API, so S3 behaves like local disk."""

import io
import zipfile

import pytest
from django.core.files.storage import storages

from apps.datasets.models import Image
from apps.datasets.services import annotation_set, dataset_import, image_ingest, version_export_zip, version_freeze
from tests.builders import jpeg, make_dataset
from tests.conftest import free_port, require
from vectormlops.errors import DomainError

BUCKET = "vectormlops-test"


@pytest.fixture
def s3_storage(settings):
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:  # pragma: no cover - moto[server] is in requirements-dev
        require(False, "moto[server]")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    client = boto3.client("s3", endpoint_url=endpoint, **credentials)
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": endpoint,
                "access_key": "testing",
                "secret_key": "testing",
                "region_name": "us-east-1",
                "file_overwrite": False,
            },
        },
    }
    storages._storages.pop("default", None)  # settings_changed resets it too; be explicit
    yield client
    storages._storages.pop("default", None)
    server.stop()


def keys(client) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


@pytest.mark.django_db
def test_ingest_dedupe_and_export_on_s3(s3_storage, tmp_path):
    assert type(storages["default"]).__name__ == "S3Storage"
    dataset = make_dataset("s3")
    image, created = image_ingest(dataset=dataset, fileobj=io.BytesIO(jpeg(1)), source="upload")
    assert created
    assert keys(s3_storage) == sorted([image.storage_path, image.thumbnail_path])
    body = s3_storage.get_object(Bucket=BUCKET, Key=image.storage_path)["Body"].read()
    assert body == jpeg(1)
    again, created = image_ingest(dataset=dataset, fileobj=io.BytesIO(jpeg(1)), source="camera")
    assert not created and again.pk == image.pk and len(keys(s3_storage)) == 2
    with pytest.raises(DomainError):
        image_ingest(dataset=dataset, fileobj=io.BytesIO(b"not an image"), source="upload")
    assert len(keys(s3_storage)) == 2

    annotation_set(image=image, boxes=[{"class_id": 0, "box": [1, 1, 20, 20]}], status="approved")
    version = version_freeze(dataset=dataset)
    path = version_export_zip(version=version, fmt="yolo")
    with zipfile.ZipFile(path) as archive:
        assert archive.read(f"images/{image.split}/{image.sha256}.jpg") == jpeg(1)

    from apps.datasets.services import version_materialize

    data_yaml = version_materialize(version=version, dest_dir=tmp_path / "m")
    copied = tmp_path / "m" / "images" / image.split / f"{image.sha256}.jpg"
    assert data_yaml.is_file() and copied.read_bytes() == jpeg(1)

    other = make_dataset("s3-copy", classes=["vector", "cube"])
    report = dataset_import(dataset=other, path=path, approve=True)
    path.unlink()
    assert report["duplicates"] == 0 and report["imported"] == 1
    assert Image.objects.filter(dataset=other).get().storage_path == image.storage_path
    assert len(keys(s3_storage)) == 2  # content-addressed: the import stored nothing new
