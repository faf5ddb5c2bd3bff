"""DICOM -> 8-bit PNG: photometric interpretation, VOI window and LUT, aspect ratio, determinism, reuse."""

import os

import numpy as np
import pytest
from PIL import Image

from radvlm_pipeline.dicom import dicom_to_png, png_size
from radvlm_pipeline.images import ImageProblem
from radvlm_pipeline.sample_data.vindr import write_dicom

BITS = 12
MAX = 2**BITS - 1


def ramp(width=64, height=96) -> np.ndarray:
    """Stored values rising left to right over the whole 12-bit range."""
    row = np.round(np.linspace(0, MAX, width)).astype(np.uint16)
    return np.tile(row, (height, 1))


def png_pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "L"
        return np.asarray(image).astype(int)


def test_monochrome1_is_inverted_to_look_like_monochrome2(tmp_path):
    stored = ramp()
    write_dicom(tmp_path / "m2.dicom", stored, photometric="MONOCHROME2", bits_stored=BITS, window=None)
    write_dicom(
        tmp_path / "m1.dicom",
        (MAX - stored).astype(np.uint16),
        photometric="MONOCHROME1",
        bits_stored=BITS,
        window=None,
    )
    dicom_to_png(tmp_path / "m2.dicom", tmp_path / "m2.png")
    dicom_to_png(tmp_path / "m1.dicom", tmp_path / "m1.png")
    m2, m1 = png_pixels(tmp_path / "m2.png"), png_pixels(tmp_path / "m1.png")
    assert m2[0, 0] == 0 and m2[0, -1] == 255  # MONOCHROME2: high stored value = bright
    assert np.abs(m1 - m2).max() <= 1  # the same picture once MONOCHROME1 is inverted


def test_window_is_applied(tmp_path):
    stored = ramp(width=101)
    center, width = 2048, 1024
    write_dicom(
        tmp_path / "w.dicom", stored, photometric="MONOCHROME2", bits_stored=BITS, window=(center, width)
    )
    dicom_to_png(tmp_path / "w.dicom", tmp_path / "w.png")
    pixels = png_pixels(tmp_path / "w.png")[0]
    values = stored[0]
    assert (pixels[values < center - width / 2] == 0).all()
    assert (pixels[values > center + width / 2] == 255).all()
    inside = pixels[(values > center - width / 2 + 50) & (values < center + width / 2 - 50)]
    assert inside.size and (np.diff(inside) >= 0).all() and 0 < inside.min() < inside.max() < 255


def test_voi_lut_sequence_wins_over_the_window(tmp_path):
    stored = ramp()
    falling_lut = (MAX - np.arange(MAX + 1)).astype(np.uint16)  # a LUT that reverses the grey scale
    write_dicom(
        tmp_path / "lut.dicom",
        stored,
        photometric="MONOCHROME2",
        bits_stored=BITS,
        window=(2048, 4096),
        voi_lut=falling_lut,
    )
    dicom_to_png(tmp_path / "lut.dicom", tmp_path / "lut.png")
    row = png_pixels(tmp_path / "lut.png")[0]
    assert row[0] == 255 and row[-1] == 0


def test_png_size_keeps_aspect_ratio_and_never_upscales():
    assert png_size(3000, 2000, 1024) == (1024, 683)
    assert png_size(2000, 3000, 1024) == (683, 1024)
    assert png_size(300, 200, 1024) == (300, 200)
    assert png_size(300, 200, None) == (300, 200)


def test_max_side_resizes_and_reports_the_dicom_size(tmp_path):
    write_dicom(
        tmp_path / "big.dicom",
        ramp(width=60, height=90),
        photometric="MONOCHROME2",
        bits_stored=BITS,
        window=None,
        sex="O",
        view="AP",
    )
    image = dicom_to_png(tmp_path / "big.dicom", tmp_path / "big.png", max_side=30)
    assert (image.width, image.height) == (60, 90)  # boxes are normalised by the DICOM's size
    assert Image.open(tmp_path / "big.png").size == (20, 30)
    assert image.sex is None and image.view == "AP" and image.photometric == "MONOCHROME2"


def test_conversion_is_deterministic_and_skipped_when_up_to_date(tmp_path):
    dicom = tmp_path / "a.dicom"
    write_dicom(dicom, ramp(), photometric="MONOCHROME1", bits_stored=BITS, window=(2000, 3000), sex="F")
    first = dicom_to_png(dicom, tmp_path / "one.png")
    dicom_to_png(dicom, tmp_path / "two.png")
    assert (tmp_path / "one.png").read_bytes() == (tmp_path / "two.png").read_bytes()
    assert first.converted and first.sex == "F"

    written = (tmp_path / "one.png").stat().st_mtime_ns
    again = dicom_to_png(dicom, tmp_path / "one.png")
    assert not again.converted and (tmp_path / "one.png").stat().st_mtime_ns == written
    assert (again.width, again.height, again.sex) == (first.width, first.height, first.sex)

    assert dicom_to_png(dicom, tmp_path / "one.png", max_side=32).converted  # another size: converted again
    later = written + 10**9
    os.utime(dicom, ns=(later, later))  # a newer DICOM: converted again
    assert dicom_to_png(dicom, tmp_path / "two.png").converted


def test_missing_and_unreadable_dicoms_raise_image_problems(tmp_path):
    with pytest.raises(ImageProblem) as missing:
        dicom_to_png(tmp_path / "absent.dicom", tmp_path / "absent.png")
    assert missing.value.reason == "missing_image"

    (tmp_path / "text.dicom").write_text("not a DICOM file")
    with pytest.raises(ImageProblem) as garbage:
        dicom_to_png(tmp_path / "text.dicom", tmp_path / "text.png")
    assert garbage.value.reason == "unreadable_image"

    truncated = tmp_path / "cut.dicom"
    write_dicom(truncated, ramp(), photometric="MONOCHROME2", bits_stored=BITS, window=None)
    truncated.write_bytes(truncated.read_bytes()[:-500])
    with pytest.raises(ImageProblem) as cut:
        dicom_to_png(truncated, tmp_path / "cut.png")
    assert cut.value.reason == "unreadable_image" and "pixel data" in cut.value.detail
    assert not (tmp_path / "cut.png").exists()
