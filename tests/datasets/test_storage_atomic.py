"""Content-addressed files are written whole or not at all, and a wrong file already under a hash is replaced, never
trusted: on local disk (temp name, checked, renamed) and on S3 (an atomic put, checked by size and read back)."""

import hashlib
import io
import os
from pathlib import Path

import pytest
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage

from apps.datasets.services import image_ingest
from apps.datasets.storage import store_once, stored_file_matches
from tests.builders import jpeg, make_dataset
from tests.datasets.test_storage_s3 import BUCKET, s3_storage  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


def image_path(data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    return f"images/{sha[:2]}/{sha[2:4]}/{sha}.jpg"


def plant(name: str, data: bytes) -> Path:
    path = Path(default_storage.path(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_truncated_file_under_an_images_hash_is_replaced_by_the_next_upload(client, make_user):
    data = jpeg(7)
    # given a crash (or a full disk) left half of these bytes under their content address, and no image row
    path = plant(image_path(data), data[: len(data) // 2])

    image, created = image_ingest(dataset=make_dataset("a"), fileobj=io.BytesIO(data), source="upload")

    assert created and image.storage_path == image_path(data)
    assert path.read_bytes() == data
    client.force_login(make_user("ann", "annotator"))
    response = client.get(f"/datasets/images/{image.pk}/file")
    assert response.status_code == 200 and b"".join(response.streaming_content) == data
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".partial-")]


def test_an_existing_images_damaged_file_is_repaired_by_uploading_the_same_bytes_again():
    data = jpeg(8)
    dataset = make_dataset("b")
    image, _ = image_ingest(dataset=dataset, fileobj=io.BytesIO(data), source="upload")
    path = Path(default_storage.path(image.storage_path))
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # same size, one byte wrong

    again, created = image_ingest(dataset=dataset, fileobj=io.BytesIO(data), source="camera")

    assert not created and again.pk == image.pk
    assert path.read_bytes() == data


def test_a_good_file_is_kept_and_not_written_again():
    data = b"x" * 5000
    name = "misc/good.bin"
    assert store_once(name, ContentFile(data)) is True
    before = os.stat(default_storage.path(name)).st_ino
    assert store_once(name, ContentFile(data)) is False
    assert os.stat(default_storage.path(name)).st_ino == before


class FullDisk(io.BytesIO):
    """A source that fails part way, as a write does when the disk fills up."""

    def read(self, size=-1):
        if self.tell() > 0:
            raise OSError(28, "No space left on device")
        return super().read(1000)


def test_a_write_that_fails_part_way_leaves_nothing_under_the_name():
    data = b"y" * 10_000
    name = "misc/full.bin"
    with pytest.raises(OSError):
        store_once(name, File(FullDisk(data)), sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    folder = Path(default_storage.path(name)).parent
    assert not default_storage.exists(name)
    assert list(folder.iterdir()) == []  # no temp file left behind either


def test_on_s3_a_truncated_object_is_replaced_and_a_good_one_kept(s3_storage):  # noqa: F811 - the fixture
    data = jpeg(9)
    name = image_path(data)
    s3_storage.put_object(Bucket=BUCKET, Key=name, Body=data[:100])
    sha = hashlib.sha256(data).hexdigest()
    assert not stored_file_matches(name, sha, len(data))

    image, created = image_ingest(dataset=make_dataset("s3a"), fileobj=io.BytesIO(data), source="upload")

    assert created and image.storage_path == name
    assert s3_storage.get_object(Bucket=BUCKET, Key=name)["Body"].read() == data
    assert stored_file_matches(name, sha, len(data))
    assert store_once(name, ContentFile(data)) is False
    listed = [o["Key"] for o in s3_storage.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sorted(listed) == sorted([name, image.thumbnail_path])
    for key in listed:  # moto keeps its buckets for the whole process: leave this one empty for other tests
        s3_storage.delete_object(Bucket=BUCKET, Key=key)
