"""Small image helpers: frame statistics for drift monitoring, JPEG encoding, and the face-screen picture."""

import io

import numpy as np
from PIL import Image, ImageDraw

SCREEN_WIDTH, SCREEN_HEIGHT = 184, 96  # Vector's face screen


def image_stats(image: Image.Image) -> dict:
    """Brightness (mean) and contrast (standard deviation) of the grey image, both in [0, 1]."""
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    return {"brightness": round(float(grey.mean()), 4), "contrast": round(float(grey.std()), 4)}


def to_jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def render_face(image: Image.Image, detections: list) -> Image.Image:
    """The camera frame shrunk to the face screen with the detections drawn on it."""
    face = image.convert("RGB").resize((SCREEN_WIDTH, SCREEN_HEIGHT), Image.BILINEAR)
    draw = ImageDraw.Draw(face)
    sx, sy = SCREEN_WIDTH / image.width, SCREEN_HEIGHT / image.height
    for detection in detections:
        x, y, w, h = detection.box
        box = [x * sx, y * sy, (x + w) * sx, (y + h) * sy]
        draw.rectangle(box, outline=(0, 255, 0), width=2)
        draw.text((box[0] + 2, max(0, box[1] - 10)), f"{detection.label} {detection.confidence:.2f}", fill=(0, 255, 0))
    return face


def to_screen_data(face: Image.Image) -> bytes:
    """RGB565, big-endian, as ``robot.screen.set_screen_with_image_data`` wants (35,328 bytes for 184x96)."""
    pixels = np.asarray(face.convert("RGB").resize((SCREEN_WIDTH, SCREEN_HEIGHT)), dtype=np.uint16)
    value = ((pixels[..., 0] >> 3) << 11) | ((pixels[..., 1] >> 2) << 5) | (pixels[..., 2] >> 3)
    return value.astype(">u2").tobytes()
