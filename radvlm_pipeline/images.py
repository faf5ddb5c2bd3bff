"""Image checks and previews shared by the readers and the asset checks."""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path

import polars as pl
from PIL import Image, ImageDraw, UnidentifiedImageError

CHECK_THREADS = min(16, 2 * (os.cpu_count() or 1))  # Pillow decodes without holding the GIL
CHECK_CHUNK = 64  # images per thread task: a task per image costs more than an existence check


class ImageCheck(str, Enum):
    """How hard a reader checks each referenced image: a full decode catches truncated files."""

    DECODE = "decode"
    HEADER = "header"
    EXISTS = "exists"


class ImageProblem(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def check_image(path: Path, level: ImageCheck = ImageCheck.DECODE) -> tuple[int, int] | None:
    """Raise ``ImageProblem`` if the image is missing or unreadable; return (width, height) unless
    only existence was checked. DICOM files are checked by their reader, not here."""
    if not path.is_file():
        return _raise("missing_image", f"image file {path} does not exist")
    if level is ImageCheck.EXISTS:
        return None
    try:
        with Image.open(path) as image:
            size = image.size
            if level is ImageCheck.DECODE:
                image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return _raise("unreadable_image", f"image file {path} does not decode: {exc}")
    return size


def _raise(reason: str, detail: str):
    raise ImageProblem(reason, detail)


def check_images(root: Path, paths: list[str], level: ImageCheck) -> pl.DataFrame:
    """``width``, ``height``, ``image_problem`` and ``image_problem_detail`` of each image (``paths`` are
    relative to ``root``), checked in threads over chunks. Details name the relative path, so a quarantine
    table never carries one machine's folders."""

    def check(path: str) -> tuple[int | None, int | None, str | None, str | None]:
        absolute = root / path
        try:
            size = check_image(absolute, level)
        except ImageProblem as problem:
            return None, None, problem.reason, problem.detail.replace(str(absolute), path)
        return (*(size or (None, None)), None, None)

    if level is ImageCheck.EXISTS:  # a stat each: threads would only add overhead
        results = [check(path) for path in paths]
    else:
        chunks = [paths[start : start + CHECK_CHUNK] for start in range(0, len(paths), CHECK_CHUNK)]
        with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
            results = [
                result
                for chunk in pool.map(lambda chunk: [check(p) for p in chunk], chunks)
                for result in chunk
            ]
    return pl.DataFrame(
        results,
        orient="row",
        schema={
            "width": pl.Int32,
            "height": pl.Int32,
            "image_problem": pl.String,
            "image_problem_detail": pl.String,
        },
    )


def to_display_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB for drawing, whatever the source mode (16-bit PNG, grayscale JPEG...)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) / (high - low or 1.0) * 255.0
        image = Image.fromarray(scaled.astype("uint8"))
    return image.convert("RGB")


def draw_boxes(
    image_path: Path, boxes: Iterable[tuple[str, float, float, float, float]], max_side: int = 384
) -> Image.Image:
    """The image with its normalised boxes and labels drawn: what a person checks a reader against."""
    with Image.open(image_path) as source:
        canvas = to_display_rgb(source)
    scale = max_side / max(canvas.size)  # small sample images are enlarged so the labels stay legible
    canvas = canvas.resize(
        (round(canvas.width * scale), round(canvas.height * scale)), Image.Resampling.BILINEAR
    )
    draw = ImageDraw.Draw(canvas)
    colours = ("#ff4136", "#2ecc40", "#0074d9", "#ffdc00", "#b10dc9", "#ff851b")
    for index, (label, x1, y1, x2, y2) in enumerate(boxes):
        colour = colours[index % len(colours)]
        corners = (x1 * canvas.width, y1 * canvas.height, x2 * canvas.width, y2 * canvas.height)
        draw.rectangle(corners, outline=colour, width=2)
        draw.text((corners[0] + 2, corners[1] + 1), label[:40], fill=colour)
    return canvas
