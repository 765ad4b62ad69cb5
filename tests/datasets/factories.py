"""Small builders of test data for the datasets tests: generated scenes, datasets, labelled images."""

import io
import random
import zipfile

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from apps.datasets.models import Image
from apps.datasets.services import annotation_set, dataset_create, image_ingest
from vectorsim.scenes import render_scene, scene_jpeg


def jpeg(seed: int = 0, width: int = 96, height: int = 64) -> bytes:
    data, _ = scene_jpeg(random.Random(seed), width, height)
    return data


def png(seed: int = 0, width: int = 96, height: int = 64) -> bytes:
    image, _ = render_scene(random.Random(seed), width, height)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def gif(width: int = 8, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="GIF")
    return buffer.getvalue()


def upload(data: bytes, name: str = "x.jpg", content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def make_dataset(slug: str = "robots", classes=("vector", "cube"), review_required: bool = True):
    return dataset_create(slug=slug, name=slug.title(), classes=list(classes), review_required=review_required)


def make_image(dataset, seed: int = 0, *, boxes=None, status=None, width: int = 96, height: int = 64) -> Image:
    image, _ = image_ingest(dataset=dataset, fileobj=io.BytesIO(jpeg(seed, width, height)), source="upload")
    if boxes is not None or status is not None:
        annotation_set(image=image, boxes=boxes or [], status=status)
        image.refresh_from_db()
    return image


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()
