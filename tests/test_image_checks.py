"""Image check levels and the verdicts they keep: what each level catches, one pass per changed file (a
second check of unchanged files only stats them), and the same results from the process pool."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from radvlm_pipeline import images
from radvlm_pipeline.images import DEFAULT_IMAGE_CHECK, ImageCheck, ImageProblem, check_image, check_images
from radvlm_pipeline.layout import StorageLayout


def encoded(image_format: str, sixteen_bit: bool = False) -> bytes:
    noise = np.random.default_rng(0).integers(0, 4096 if sixteen_bit else 256, size=(60, 50))
    pixels = noise.astype(np.uint16 if sixteen_bit else np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


def corrupt_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 8]) + data[middle + 8 :]


FILES = {
    "ok.jpg": encoded("JPEG"),
    "ok16.png": encoded("PNG", sixteen_bit=True),
    "padded.jpg": encoded("JPEG") + b"\x00" * 100,  # bytes after the end marker, as some encoders write
    "half.jpg": encoded("JPEG")[: len(encoded("JPEG")) // 2],
    "tail.jpg": encoded("JPEG")[:-40],
    "half16.png": encoded("PNG", sixteen_bit=True)[: len(encoded("PNG", sixteen_bit=True)) // 2],
    "tail16.png": encoded("PNG", sixteen_bit=True)[:-20],
    "flipped16.png": corrupt_middle(encoded("PNG", sixteen_bit=True)),
    "html.jpg": b"<html>503 Service Unavailable</html>",
}


@pytest.fixture
def folder(tmp_path):
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


def caught(path, level) -> bool:
    try:
        check_image(path, level)
    except ImageProblem:
        return True
    return False


@pytest.mark.parametrize(
    ("name", "levels_that_catch"),
    [
        ("ok.jpg", set()),
        ("ok16.png", set()),
        ("padded.jpg", set()),
        ("half.jpg", {"complete", "verify", "decode"}),
        ("tail.jpg", {"complete", "verify", "decode"}),
        ("half16.png", {"complete", "verify", "decode"}),
        ("tail16.png", {"complete", "verify", "decode"}),
        ("flipped16.png", {"verify", "decode"}),  # corruption inside: only reading every byte sees it
        ("html.jpg", {"header", "complete", "verify", "decode"}),
    ],
)
def test_each_level_catches_what_it_promises(folder, name, levels_that_catch):
    found = {level.value for level in ImageCheck if caught(folder / name, level)}
    assert found == levels_that_catch
    assert DEFAULT_IMAGE_CHECK is ImageCheck.COMPLETE  # the cheapest level that catches truncation


def test_verdicts_are_reused_until_a_file_changes_or_a_stronger_level_is_asked(folder, tmp_path, monkeypatch):
    checked = []
    real = images.check_image
    monkeypatch.setattr(
        images, "check_image", lambda path, level: checked.append(path.name) or real(path, level)
    )
    verdicts = StorageLayout(tmp_path / "storage").image_verdicts("mimic_cxr")
    assert verdicts == tmp_path / "storage" / "image_checks" / "mimic_cxr.parquet"
    paths = ["ok.jpg", "half.jpg", "gone.jpg", "ok.jpg", "ok16.png"]

    first = check_images(folder, paths, ImageCheck.COMPLETE, verdicts)
    assert first["image_problem"].to_list() == [None, "unreadable_image", "missing_image", None, None]
    assert first["image_problem_detail"][2] == "image file gone.jpg does not exist"
    assert first["width"].to_list() == [50, None, None, 50, 50]
    assert sorted(checked) == ["half.jpg", "ok.jpg", "ok16.png"]  # once per file, missing ones only stat

    checked.clear()
    assert check_images(folder, paths, ImageCheck.COMPLETE, verdicts).equals(first)
    assert check_images(folder, paths, ImageCheck.HEADER, verdicts)["image_problem"][1] == "unreadable_image"
    assert checked == []  # unchanged files, same or weaker level: the verdicts answer

    (folder / "ok16.png").write_bytes(FILES["flipped16.png"])
    assert check_images(folder, paths, ImageCheck.COMPLETE, verdicts)["image_problem"][4] is None
    assert checked == ["ok16.png"]  # the changed file alone, at the level asked
    checked.clear()
    again = check_images(folder, paths, ImageCheck.VERIFY, verdicts)
    assert again["image_problem"].to_list() == [
        None,
        "unreadable_image",
        "missing_image",
        None,
        "unreadable_image",
    ]
    assert sorted(checked) == ["half.jpg", "ok.jpg", "ok16.png"]


def test_the_process_pool_gives_what_one_process_gives(folder, monkeypatch):
    paths = sorted(FILES) * 3
    alone = check_images(folder, paths, ImageCheck.VERIFY)
    monkeypatch.setattr(images, "CHECK_CHUNK", 4)
    monkeypatch.setattr(images, "POOL_AFTER_S", 0.0)
    monkeypatch.setattr(images, "usable_cores", lambda: 2)
    assert check_images(folder, paths, ImageCheck.VERIFY).equals(alone)
