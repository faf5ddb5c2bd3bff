"""DICOM -> 8-bit PNG, the way a radiologist's viewer shows the image.

VinDr-CXR ships 16-bit DICOMs, some MONOCHROME1 (bright = air) and some MONOCHROME2, each with its own
VOI window or VOI LUT. A model needs one convention: the modality and VOI transforms applied (pydicom's
``apply_modality_lut`` / ``apply_voi_lut``), MONOCHROME1 inverted so bone is always bright, the result
stretched to 0..255 and the aspect ratio kept. The paper's code skipped the inversion and squashed the
aspect ratio; both silently corrupt what the boxes point at.

A conversion is deterministic (same DICOM -> byte-identical PNG) and is skipped when the PNG is already
there, newer than its DICOM and of the expected size, so re-materialising a source costs a header read
per image, not a decode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from radvlm_pipeline.images import ImageProblem

# Longest side of a converted PNG unless the reader is told otherwise: at the DICOMs' full ~3000 px the
# conversion takes hours on a small machine. Boxes stay normalised by the DICOM's own size either way.
PNG_MAX_SIDE = 1024


@dataclass(frozen=True)
class DicomImage:
    """What the readers need from a DICOM besides its pixels."""

    width: int  # Columns: the size its boxes are normalised by
    height: int  # Rows
    photometric: str
    sex: str | None  # "M", "F" or None (PatientSex absent, empty or "O")
    view: str | None  # ViewPosition, None when absent or empty
    converted: bool  # False when an up-to-date PNG was reused


def png_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The PNG's size: the DICOM's, or scaled down (never up) so the longest side is ``max_side``."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_display_pixels(dataset: pydicom.Dataset) -> np.ndarray:
    """The stored pixels as an 8-bit image with bright = dense, whatever the photometric interpretation."""
    pixels = apply_modality_lut(dataset.pixel_array, dataset)
    pixels = apply_voi_lut(pixels, dataset).astype(np.float64)  # a VOI LUT Sequence wins over the window
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
    if dataset.PhotometricInterpretation == "MONOCHROME1":
        scaled = 1.0 - scaled
    return np.round(scaled * 255.0).astype(np.uint8)


def dicom_to_png(dicom_path: Path, png_path: Path, max_side: int | None = None) -> DicomImage:
    """Write ``png_path`` from ``dicom_path`` unless an up-to-date PNG is there; raise ``ImageProblem``
    (reason ``missing_image`` or ``unreadable_image``) when the DICOM cannot be used."""
    if not dicom_path.is_file():
        raise ImageProblem("missing_image", f"DICOM file {dicom_path} does not exist")
    header = _read(dicom_path, stop_before_pixels=True)
    size = png_size(int(header.Columns), int(header.Rows), max_side)
    if _is_up_to_date(png_path, dicom_path, size):
        return _describe(header, converted=False)
    dataset = _read(dicom_path, stop_before_pixels=False)
    try:
        pixels = to_display_pixels(dataset)
    except Exception as exc:  # pydicom raises many types for truncated or undecodable pixel data
        raise ImageProblem(
            "unreadable_image", f"DICOM file {dicom_path} pixel data does not decode: {exc}"
        ) from exc
    image = Image.fromarray(pixels)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    partial = png_path.with_name(png_path.name + ".partial")
    image.save(partial, format="PNG")
    os.replace(partial, png_path)  # a crash never leaves a half-written PNG that looks up to date
    return _describe(dataset, converted=True)


def _read(path: Path, stop_before_pixels: bool) -> pydicom.Dataset:
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        rows, columns = int(dataset.Rows), int(dataset.Columns)
    except Exception as exc:  # InvalidDicomError, EOFError, missing Rows/Columns...
        raise ImageProblem("unreadable_image", f"DICOM file {path} cannot be read: {exc}") from exc
    if rows <= 0 or columns <= 0:
        raise ImageProblem("unreadable_image", f"DICOM file {path} has Rows={rows}, Columns={columns}")
    return dataset


def _is_up_to_date(png_path: Path, dicom_path: Path, size: tuple[int, int]) -> bool:
    if not png_path.is_file() or png_path.stat().st_mtime_ns < dicom_path.stat().st_mtime_ns:
        return False
    try:
        with Image.open(png_path) as existing:
            return existing.size == size and existing.mode == "L"
    except Exception:  # an unreadable PNG is simply converted again
        return False


def _describe(dataset: pydicom.Dataset, converted: bool) -> DicomImage:
    sex = str(dataset.get("PatientSex", "") or "").strip().upper()
    view = str(dataset.get("ViewPosition", "") or "").strip().upper()
    return DicomImage(
        width=int(dataset.Columns),
        height=int(dataset.Rows),
        photometric=str(dataset.get("PhotometricInterpretation", "")),
        sex=sex if sex in ("M", "F") else None,
        view=view or None,
        converted=converted,
    )
