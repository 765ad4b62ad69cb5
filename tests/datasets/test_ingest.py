"""Ingestion: every entry point stores images through image_ingest; bad files are refused with their own code."""

import io
import struct
import zlib
from pathlib import Path

import pytest
from django.conf import settings

from apps.datasets.models import Image
from apps.datasets.services import image_ingest, split_for
from tests.builders import gif, jpeg, png
from vectormlops.errors import DomainError


def media_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def png_header_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG signature and IHDR claiming a huge image, with a tiny IDAT (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def ingest(dataset, data: bytes, **kwargs):
    return image_ingest(dataset=dataset, fileobj=io.BytesIO(data), source=kwargs.pop("source", "upload"), **kwargs)


def test_a_jpeg_is_stored_content_addressed_with_statistics_and_a_thumbnail(dataset):
    image, created = ingest(dataset, jpeg(1), meta={"head_angle": 10}, captured_at="2026-11-27T10:00:00Z")
    assert created
    assert image.storage_path == f"images/{image.sha256[:2]}/{image.sha256[2:4]}/{image.sha256}.jpg"
    assert (Path(settings.MEDIA_ROOT) / image.storage_path).read_bytes() == jpeg(1)
    assert (Path(settings.MEDIA_ROOT) / image.thumbnail_path).is_file()
    assert (image.width, image.height, image.format) == (96, 64, "JPEG")
    assert 0 < image.brightness < 1 and 0 < image.contrast < 1 and image.sharpness > 0
    assert len(image.color_histogram) == 3 and all(abs(sum(ch) - 1) < 1e-3 for ch in image.color_histogram)
    assert len(image.phash) == 16
    assert image.split == split_for(image.sha256, dataset.split_ratios)
    assert image.meta == {"head_angle": 10} and image.captured_at.isoformat() == "2026-11-27T10:00:00+00:00"


def test_a_png_is_accepted(dataset):
    image, created = ingest(dataset, png(2))
    assert created and image.format == "PNG" and image.storage_path.endswith(".png")


def test_the_same_bytes_again_return_the_existing_image_and_write_nothing(dataset):
    first, _ = ingest(dataset, jpeg(3))
    before = sorted(media_files())
    again, created = ingest(dataset, jpeg(3), source="camera")
    assert not created and again.pk == first.pk
    assert Image.objects.count() == 1 and sorted(media_files()) == before


def test_the_same_bytes_in_another_dataset_are_another_row_sharing_the_file(dataset):
    from tests.builders import make_dataset

    other = make_dataset("other")
    a, _ = ingest(dataset, jpeg(4))
    b, created = ingest(other, jpeg(4))
    assert created and a.pk != b.pk and a.storage_path == b.storage_path


@pytest.mark.parametrize(
    "data, code, status",
    [
        (b"this is not an image at all\n" * 10, "not_an_image", 400),
        (jpeg(5)[: len(jpeg(5)) // 2], "truncated_image", 400),
        (png_header_bomb(), "image_too_large", 413),
        (b"", "empty_file", 400),
        (gif(), "unsupported_format", 400),
    ],
    ids=["text-named-jpg", "truncated-jpeg", "png-header-bomb", "empty", "gif"],
)
def test_bad_files_are_refused_with_their_own_code_and_nothing_written(dataset, data, code, status):
    with pytest.raises(DomainError) as caught:
        ingest(dataset, data)
    assert (caught.value.code, caught.value.status_code) == (code, status)
    assert Image.objects.count() == 0 and media_files() == []


def test_too_many_pixels_is_checked_from_the_header_against_the_setting(dataset, settings):
    settings.MAX_IMAGE_PIXELS = 96 * 64 - 1
    with pytest.raises(DomainError) as caught:
        ingest(dataset, jpeg(6))
    assert caught.value.code == "image_too_large" and caught.value.status_code == 413
    assert media_files() == []


def test_a_file_over_the_byte_limit_is_413(dataset):
    data = b"\xff\xd8" + b"\0" * (settings.MAX_UPLOAD_BYTES + 10)
    with pytest.raises(DomainError) as caught:
        ingest(dataset, data)
    assert (caught.value.code, caught.value.status_code) == ("file_too_large", 413)
    assert Image.objects.count() == 0 and media_files() == []


@pytest.mark.parametrize(
    "kwargs, code",
    [({"meta": ["not", "an", "object"]}, "invalid_meta"), ({"captured_at": "yesterday"}, "invalid_captured_at")],
)
def test_bad_metadata_is_refused(dataset, kwargs, code):
    with pytest.raises(DomainError) as caught:
        ingest(dataset, jpeg(7), **kwargs)
    assert caught.value.code == code
    assert Image.objects.count() == 0 and media_files() == []


def test_ingestion_sends_the_image_ingested_signal_on_commit(dataset, django_capture_on_commit_callbacks):
    from apps.datasets.signals import image_ingested

    seen = []

    def receiver(sender, image, **kwargs):
        seen.append(image.pk)

    image_ingested.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            image, _ = ingest(dataset, jpeg(8))
            assert seen == []
        with django_capture_on_commit_callbacks(execute=True):
            ingest(dataset, jpeg(8))  # a duplicate is not news
    finally:
        image_ingested.disconnect(receiver)
    assert seen == [image.pk]


def test_a_photo_turned_by_exif_is_measured_as_shown(dataset):
    from PIL import Image as PILImage

    raw = PILImage.new("RGB", (60, 40), (200, 10, 10))
    exif = PILImage.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    buffer = io.BytesIO()
    raw.save(buffer, format="JPEG", exif=exif.tobytes())
    image, _ = ingest(dataset, buffer.getvalue())
    assert (image.width, image.height) == (40, 60)
    assert (Path(settings.MEDIA_ROOT) / image.storage_path).read_bytes() == buffer.getvalue()


def test_the_fast_laplacian_is_scipys():
    import numpy as np
    from scipy import ndimage

    from apps.datasets.imaging import _laplace

    rng = np.random.default_rng(3)
    for shape in ((360, 640), (1, 1), (1, 7), (5, 2)):
        luma = (rng.random(shape) * 255).astype(np.float32)
        assert np.allclose(_laplace(luma), ndimage.laplace(luma), atol=1e-3)


def test_the_ingested_event_is_published_off_the_request_and_a_failed_send_does_not_stop_the_publisher(
    transactional_db, make_user, monkeypatch
):
    import asyncio

    from channels.db import database_sync_to_async
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.db import connections

    from tests.builders import make_dataset
    from vectormlops import events
    from vectormlops.routing import websocket_urlpatterns

    dataset = make_dataset(slug="live")
    user = make_user("watcher", "ml_engineer")
    real_layer, failures = events.get_channel_layer, []

    def layer_failing_once():
        if not failures:
            failures.append(1)
            raise ConnectionError("redis went away")
        return real_layer()

    monkeypatch.setattr(events, "get_channel_layer", layer_failing_once)

    def ingest_elsewhere(data):  # another thread, as a request is; its connection closed, or PostgreSQL keeps it
        try:
            return ingest(dataset, data)
        finally:
            connections.close_all()

    async def scenario():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/events/dataset.live/")
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        assert connected
        lost = await asyncio.to_thread(ingest_elsewhere, jpeg(41))  # its event meets the failure
        while not failures:
            await asyncio.sleep(0.05)
        kept = await asyncio.to_thread(ingest_elsewhere, jpeg(42))
        message = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        # The consumer's database work ran on asgiref's one thread for thread-sensitive code, whose connection
        # outlives the test (CONN_MAX_AGE) and keeps PostgreSQL from dropping the test database: close it there.
        await database_sync_to_async(connections.close_all)()
        return lost[0], kept[0], message

    lost, kept, message = asyncio.run(scenario())
    assert failures == [1]
    assert message["event"] == "image_ingested" and message["data"]["id"] == kept.pk != lost.pk
