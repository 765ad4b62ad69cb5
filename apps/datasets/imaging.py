"""Image checks and statistics (Pillow + numpy, no database): what ingestion needs to trust a file and describe it."""

import io
import sys
import warnings
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile, ImageOps, UnidentifiedImageError

from vectormlops.errors import PayloadTooLarge, ValidationFailed

ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png"}
THUMB_SIZE = 256
# Statistics are computed on at most this many pixels on the long side: bounds memory and time for 40 MP uploads;
# Vector's camera frames (640x360) are measured at full resolution, so robot telemetry compares like with like.
STATS_MAX_SIDE = 1280


@dataclass
class ImageFacts:
    """What ingestion learns from a verified image file."""

    format: str
    ext: str
    width: int
    height: int
    brightness: float
    contrast: float
    sharpness: float
    color_histogram: list
    phash: str
    thumbnail: bytes


def _looks_like_image(path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(8)
    return head.startswith(b"\xff\xd8\xff") or head == b"\x89PNG\r\n\x1a\n"


def _pillow_open(path) -> PILImage.Image:
    """Pillow's own ``Image.open``. Importing ultralytics replaces it with a wrapper that, on an unidentified file,
    tries to install and load a HEIF plugin; hostile uploads must never reach that path."""
    patches = sys.modules.get("ultralytics.utils.patches")
    return getattr(patches, "_image_open", PILImage.open)(path)


def _open(path, max_pixels: int) -> PILImage.Image:
    """Open from the header only and check format and pixel count before any decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            image = _pillow_open(path)
    except PILImage.DecompressionBombError as exc:
        raise PayloadTooLarge(
            "The image has too many pixels.", code="image_too_large", details={"max_pixels": max_pixels}
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if _looks_like_image(path):  # a JPEG/PNG signature cut off before its header ends
            raise ValidationFailed("The image is truncated or corrupt.", code="truncated_image") from exc
        raise ValidationFailed("The file is not an image.", code="not_an_image") from exc
    if image.format not in ALLOWED_FORMATS:
        fmt = image.format
        image.close()
        raise ValidationFailed(
            f"Only JPEG and PNG images are accepted, not {fmt}.", code="unsupported_format", details={"format": fmt}
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise ValidationFailed("The image has no pixels.", code="not_an_image")
    if width * height > max_pixels:
        image.close()
        raise PayloadTooLarge(
            f"The image has {width}x{height} pixels, more than the limit of {max_pixels}.",
            code="image_too_large",
            details={"width": width, "height": height, "max_pixels": max_pixels},
        )
    return image


def inspect_image(path, *, max_pixels: int) -> ImageFacts:
    """Verify ``path`` is a whole JPEG/PNG (header check, ``verify()``, then a full decode) and describe it."""
    # A truncated file must fail, never decode half grey (another library in the process may have flipped this).
    previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        return _inspect(path, max_pixels)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _inspect(path, max_pixels: int) -> ImageFacts:
    image = _open(path, max_pixels)
    try:
        image.verify()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt data
        raise ValidationFailed(f"The image data is corrupt ({exc}).", code="truncated_image") from exc
    finally:
        image.close()
    image = _open(path, max_pixels)  # verify() leaves the object unusable; decode afresh
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            image.load()
    except Exception as exc:  # noqa: BLE001
        image.close()
        raise ValidationFailed(f"The image is truncated or corrupt ({exc}).", code="truncated_image") from exc
    try:
        return _describe(image)
    finally:
        image.close()


def _laplace(luma: np.ndarray) -> np.ndarray:
    """scipy.ndimage.laplace (mode "reflect") by slicing: the same values, about 6x faster on a camera frame."""
    padded = np.pad(luma, 1, mode="symmetric")
    return padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * luma


def _describe(image: PILImage.Image) -> ImageFacts:
    fmt = image.format
    # Browsers (and so the labeling canvas) and OpenCV (ultralytics) show a photo turned by its EXIF orientation:
    # sizes, boxes and statistics are those of the image as shown. The stored bytes stay as uploaded.
    ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of a frame that needs no turning
    width, height = image.size
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    small = rgb
    if max(width, height) > STATS_MAX_SIDE:
        small = rgb.copy()
        small.thumbnail((STATS_MAX_SIDE, STATS_MAX_SIDE))
    # Pillow's "L" is ITU-R BT.601 luma; its C histogram is ~10x faster than numpy's on these sizes.
    grey = small.convert("L")
    luma = np.asarray(grey, dtype=np.float32)
    brightness = float(luma.mean() / 255.0)
    contrast = float(luma.std() / 255.0)
    sharpness = float(_laplace(luma).var())
    bins = np.asarray(small.histogram(), dtype=np.float64).reshape(3, 8, 32).sum(axis=2)
    totals = bins.sum(axis=1, keepdims=True)
    totals[totals == 0] = 1
    histogram = [[round(float(v), 6) for v in row] for row in bins / totals]
    phash = str(imagehash.phash(grey))  # phash converts to L itself: the same hash, one conversion less
    thumb = small.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE), reducing_gap=2.0)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=80)
    return ImageFacts(
        format=fmt,
        ext=ALLOWED_FORMATS[fmt],
        width=width,
        height=height,
        brightness=round(brightness, 6),
        contrast=round(contrast, 6),
        sharpness=round(sharpness, 4),
        color_histogram=histogram,
        phash=phash,
        thumbnail=buffer.getvalue(),
    )
