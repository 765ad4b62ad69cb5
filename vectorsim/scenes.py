"""Synthetic camera scenes of Vector-like robots with their true boxes (generated, not photographs).

Used by the demo seed, by tests (tiny trainings), by the virtual Vector's camera and by benchmarks. A "robot"
is a dark rounded body with a lighter face plate and two light-blue eyes; the background is a random gradient
with light clutter that is not a robot. Pure Pillow, no Django, so the agent side can use it too.
"""

import io
import random

from PIL import Image, ImageDraw, ImageFilter

CLASS_NAMES = ["vector"]


def _background(rng: random.Random, width: int, height: int) -> Image.Image:
    top = tuple(rng.randint(120, 240) for _ in range(3))
    bottom = tuple(max(0, min(255, c + rng.randint(-90, 30))) for c in top)
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / max(1, height - 1)
        draw.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    # Clutter: light boxes and ellipses, so the model must learn more than "dark blob".
    for _ in range(rng.randint(2, 6)):
        x0, y0 = rng.randint(0, width - 1), rng.randint(0, height - 1)
        x1, y1 = x0 + rng.randint(width // 20, width // 4), y0 + rng.randint(height // 20, height // 4)
        colour = tuple(rng.randint(90, 255) for _ in range(3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([x0, y0, x1, y1], fill=colour)
    return image


def _draw_robot(draw: ImageDraw.ImageDraw, rng: random.Random, x: int, y: int, w: int, h: int) -> None:
    body = tuple(rng.randint(15, 50) for _ in range(3))
    draw.rounded_rectangle([x, y, x + w, y + h], radius=max(2, min(w, h) // 5), fill=body)
    fx0, fy0, fx1, fy1 = x + w * 0.18, y + h * 0.15, x + w * 0.82, y + h * 0.55
    draw.rectangle([fx0, fy0, fx1, fy1], fill=(5, 5, 10))
    eye_w, eye_h = (fx1 - fx0) * 0.22, (fy1 - fy0) * 0.55
    for cx in (fx0 + (fx1 - fx0) * 0.3, fx0 + (fx1 - fx0) * 0.7):
        cy = (fy0 + fy1) / 2
        draw.rounded_rectangle(
            [cx - eye_w / 2, cy - eye_h / 2, cx + eye_w / 2, cy + eye_h / 2], radius=2, fill=(80, 230, 255)
        )
    # The lift arm: a thin light bar across the front.
    draw.rectangle([x + w * 0.05, y + h * 0.7, x + w * 0.95, y + h * 0.78], fill=(150, 150, 155))


def render_scene(
    rng: random.Random, width: int = 640, height: int = 360, *, robots: int | None = None, brightness: float = 1.0
) -> tuple[Image.Image, list[list[float]]]:
    """One scene and its true boxes ``[[x, y, w, h], ...]`` in pixels; ``brightness`` < 1 darkens the room."""
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    count = rng.choice([0, 1, 1, 1, 2]) if robots is None else robots
    boxes: list[list[float]] = []
    for _ in range(count):
        for _attempt in range(20):
            w = rng.randint(max(8, width // 8), max(9, width // 3))
            h = int(w * rng.uniform(0.75, 0.95))
            x, y = rng.randint(0, width - w - 1), rng.randint(0, height - h - 1)
            if all(x + w < bx or bx + bw < x or y + h < by or by + bh < y for bx, by, bw, bh in boxes):
                break
        _draw_robot(draw, rng, x, y, w, h)
        boxes.append([float(x), float(y), float(w), float(h)])
    if brightness != 1.0:
        image = image.point(lambda v: max(0, min(255, int(v * brightness))))
    image = image.filter(ImageFilter.GaussianBlur(radius=0.4))
    return image, boxes


def scene_jpeg(rng: random.Random, width: int = 640, height: int = 360, **kwargs) -> tuple[bytes, list[list[float]]]:
    """A scene encoded as JPEG bytes (what Vector's camera sends), with its boxes."""
    image, boxes = render_scene(rng, width, height, **kwargs)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), boxes
