"""Image checks and previews shared by the readers and the asset checks.

At the real datasets' size an image check is the most expensive thing a source does (~630,000 frontal
images of 1-10 MB), so three rules keep it to one pass per changed image:
- the level is a setting; the default, ``complete``, reads each file's header and its last KiB, which
  catches a missing, unreadable or truncated file (the faults an interrupted download or unzip leaves)
  at a fraction of a millisecond; ``verify`` and ``decode`` read every byte (benchmarks/image_checks.py
  measured the costs and what each level catches);
- a verdict is kept with the file's size and modification time (``StorageLayout.image_verdicts``) and
  reused until the file changes or a stronger level is asked for, so the ``images_decode`` asset check
  reuses the reader's verdicts, the sources annotating MIMIC-CXR images reuse MIMIC-CXR's, and a new
  release checks only its new files;
- what is left is checked by a process pool sized from the cores this process may use (opening a file
  and parsing its header is Python, which threads would serialise on the GIL).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from enum import Enum
from pathlib import Path

import polars as pl
from PIL import Image, ImageDraw, UnidentifiedImageError

CHECK_CHUNK = 256  # images per process task: pickling a task per image would cost more than checking it
# A worker process takes ~0.4 s to start (spawned: Python, Pillow, polars) and the header-and-tail levels
# cost ~0.05 ms an image of a file in the page cache (benchmarks/image_checks.py; 4-16 ms to verify, 8-80
# ms to decode), so the pool is used for more estimated work than this: verifying a few hundred images,
# or the cheap levels on a whole release (where reading each file's tail from disk dominates).
POOL_AFTER_S = 5.0
ESTIMATED_MS = {"exists": 0.02, "header": 0.05, "complete": 0.05, "verify": 10.0, "decode": 40.0}
TAIL_BYTES = 1024  # how far from the end a complete file's end marker must be (encoders may pad after it)
# The last bytes a complete file of the format holds: JPEG's EOI marker, PNG's IEND chunk type and CRC.
END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


class ImageCheck(str, Enum):
    """How hard each referenced image is checked, weakest first (see the module docstring)."""

    EXISTS = "exists"  # the file is there
    HEADER = "header"  # it opens as an image: format and size
    COMPLETE = "complete"  # and it ends with its format's end marker: not truncated
    VERIFY = "verify"  # and every byte is consistent: PNG chunk CRCs, JPEG entropy data at 1/8 scale
    DECODE = "decode"  # and it decodes in full

    @property
    def strength(self) -> int:
        return list(ImageCheck).index(self)


DEFAULT_IMAGE_CHECK = ImageCheck.COMPLETE


class ImageProblem(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def check_image(path: Path, level: ImageCheck = DEFAULT_IMAGE_CHECK) -> tuple[int, int] | None:
    """Raise ``ImageProblem`` if the image is missing or fails the level's check; return (width, height)
    unless only existence was checked. DICOM files are checked by their reader, not here."""
    if not path.is_file():
        return _raise("missing_image", f"image file {path} does not exist")
    if level is ImageCheck.EXISTS:
        return None
    try:
        with Image.open(path) as image:
            size, marked = image.size, image.format in END_MARKERS
            if marked and level.strength >= ImageCheck.COMPLETE.strength:
                # At the stronger levels too: a decoder stops at the last pixel, so a PNG cut after its
                # pixel data decodes.
                _require_end_marker(path, END_MARKERS[image.format], image.format)
            if level is ImageCheck.HEADER or (level is ImageCheck.COMPLETE and marked):
                return size
            if level is ImageCheck.VERIFY and image.format == "PNG":
                image.verify()
            elif level is ImageCheck.VERIFY and image.format == "JPEG":
                image.draft(image.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
                image.load()
            else:  # decode, or a format with no cheaper test
                image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return _raise("unreadable_image", f"image file {path} does not decode: {exc}")
    return size


def _require_end_marker(path: Path, marker: bytes, image_format: str) -> None:
    with path.open("rb") as handle:
        handle.seek(max(0, handle.seek(0, os.SEEK_END) - TAIL_BYTES))
        if marker not in handle.read():
            raise OSError(
                f"no {image_format} end marker in its last {TAIL_BYTES} bytes: the file is truncated"
            )


def _raise(reason: str, detail: str):
    raise ImageProblem(reason, detail)


VERDICT_SCHEMA = {
    "path": pl.String,
    "bytes": pl.Int64,
    "mtime_ns": pl.Int64,
    "level": pl.String,
    "width": pl.Int32,
    "height": pl.Int32,
    "image_problem": pl.String,
    "image_problem_detail": pl.String,
}
RESULT_COLUMNS = ["width", "height", "image_problem", "image_problem_detail"]


def check_images(
    root: Path, paths: list[str], level: ImageCheck, verdicts: Path | None = None
) -> pl.DataFrame:
    """``width``, ``height``, ``image_problem`` and ``image_problem_detail`` of each image (``paths`` are
    relative to ``root``), in the order given. With ``verdicts`` (a Parquet file, see the module
    docstring) earlier verdicts on unchanged files at this level or a stronger one are reused, and the
    file is updated. Details name the relative path, so a quarantine table never carries one machine's
    folders."""
    result_schema = {name: VERDICT_SCHEMA[name] for name in ["path", *RESULT_COLUMNS]}
    stats = pl.DataFrame(
        [_stat(root, path) for path in dict.fromkeys(paths)],
        orient="row",
        schema={name: VERDICT_SCHEMA[name] for name in ("path", "bytes", "mtime_ns")},
    )
    reused = stats.join(_reusable(verdicts, level), on=["path", "bytes", "mtime_ns"], how="inner")
    unknown = stats.join(reused.select("path"), on="path", how="anti")
    present = unknown.filter(pl.col("bytes").is_not_null())
    checked = pl.DataFrame(
        _check_all(root, present["path"].to_list(), level), orient="row", schema=result_schema
    )
    absent = unknown.filter(pl.col("bytes").is_null()).select(
        "path",
        pl.lit(None, pl.Int32).alias("width"),
        pl.lit(None, pl.Int32).alias("height"),
        pl.lit("missing_image").alias("image_problem"),
        pl.format("image file {} does not exist", "path").alias("image_problem_detail"),
    )
    if verdicts is not None and checked.height:
        _record(verdicts, present.join(checked, on="path"), level)
    every = pl.concat([reused.select(list(result_schema)), checked, absent])
    return (
        pl.DataFrame({"path": paths}, schema={"path": pl.String})
        .join(every, on="path", how="left", maintain_order="left")
        .select(RESULT_COLUMNS)
    )


def _stat(root: Path, path: str) -> tuple[str, int | None, int | None]:
    try:
        found = os.stat(root / path)
    except OSError:
        return path, None, None
    return path, found.st_size, found.st_mtime_ns


def _reusable(verdicts: Path | None, level: ImageCheck) -> pl.DataFrame:
    """Recorded verdicts at ``level`` or a stronger one."""
    columns = ["path", "bytes", "mtime_ns", *RESULT_COLUMNS]
    if verdicts is None or not verdicts.is_file():
        return pl.DataFrame(schema={name: VERDICT_SCHEMA[name] for name in columns})
    stronger = [check.value for check in ImageCheck if check.strength >= level.strength]
    return pl.read_parquet(verdicts).filter(pl.col("level").is_in(stronger)).select(columns)


def _record(verdicts: Path, fresh: pl.DataFrame, level: ImageCheck) -> None:
    """Replace the verdicts on these files (written whole, then renamed: a reader never sees half)."""
    new = fresh.select("path", "bytes", "mtime_ns", pl.lit(level.value).alias("level"), *RESULT_COLUMNS)
    if verdicts.is_file():
        new = pl.concat([pl.read_parquet(verdicts).join(new.select("path"), on="path", how="anti"), new])
    verdicts.parent.mkdir(parents=True, exist_ok=True)
    partial = verdicts.with_name(verdicts.name + ".partial")
    new.sort("path").write_parquet(partial, compression="zstd")
    os.replace(partial, verdicts)


def usable_cores() -> int:
    """The cores this process may run on (its affinity, e.g. a Slurm or container allotment)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_all(root: Path, paths: Sequence[str], level: ImageCheck) -> list[tuple]:
    """(path, width, height, problem, detail) per existing file: in this process when the work is small,
    else in a pool of spawned processes (a fork would copy the caller's threads' locks)."""
    chunks = [paths[start : start + CHECK_CHUNK] for start in range(0, len(paths), CHECK_CHUNK)]
    estimated_s = len(paths) * ESTIMATED_MS[level.value] / 1000
    workers = min(usable_cores(), len(chunks)) if estimated_s > POOL_AFTER_S else 1
    if workers <= 1:
        return [result for chunk in chunks for result in _check_chunk(root, chunk, level)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return [
            result
            for results in pool.map(_check_chunk, [root] * len(chunks), chunks, [level] * len(chunks))
            for result in results
        ]


def _check_chunk(root: Path, paths: Sequence[str], level: ImageCheck) -> list[tuple]:
    results = []
    for path in paths:
        absolute = root / path
        try:
            width, height = check_image(absolute, level) or (None, None)
        except ImageProblem as problem:
            results.append((path, None, None, problem.reason, problem.detail.replace(str(absolute), path)))
        else:
            results.append((path, width, height, None, None))
    return results


def to_display_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB for drawing, whatever the source mode (16-bit PNG, grayscale JPEG...)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) / (high - low or 1.0) * 255.0
        image = Image.fromarray(scaled.astype("uint8"))
    return image.convert("RGB")


def open_rgb(path: Path) -> Image.Image:
    """The image a model is shown, in training and in evaluation alike: 8-bit RGB whatever the file
    (PadChest-GR's 16-bit PNGs rescaled as ``to_display_rgb`` does; a plain RGB conversion would clip
    them to white)."""
    with Image.open(path) as image:
        return to_display_rgb(image)


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
