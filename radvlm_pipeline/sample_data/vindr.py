"""VinDr-CXR 1.0.0 in its released layout: annotation CSVs plus one 16-bit DICOM per image.

``vindr-cxr/annotations/annotations_train.csv`` has one row per radiologist box (three radiologists per
image, ``rad_id`` R1..R17; a radiologist who saw nothing writes one "No finding" row with empty
coordinates), ``annotations_test.csv`` holds the consensus with the column spelled ``rad_ID``, and
``image_labels_{train,test}.csv`` the image-level labels (the test file spells "Other disease").
Boxes are in DICOM pixel space. DICOMs are uncompressed explicit VR little endian, 12- or 14-bit,
MONOCHROME1 or MONOCHROME2, with a window (and on one image a VOI LUT Sequence) so the reader's
conversion has every case to handle.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
from pathlib import Path

import numpy as np
import polars as pl
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radvlm_pipeline.datasets import VINDR_CXR
from radvlm_pipeline.sample_data.common import (
    FINDINGS_BY_KEY,
    PAPER_MIMIC_STUDIES,
    Case,
    PlacedFinding,
    Variant,
    region_box,
    render_radiograph,
    rng_for,
    sample_case,
    to_uint16,
)
from radvlm_pipeline.sample_data.files import FileJobs, complete_file, pool_of, write_file, write_table
from radvlm_pipeline.sources.vindr_cxr import LOCAL_CLASSES, NO_FINDING, TEST_CSV, TRAIN_CSV

TRAIN_IMAGES = 50
TEST_IMAGES = 22
RADIOLOGISTS = tuple(f"R{i}" for i in range(1, 18))
DIGITAL_XRAY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
COLUMNS = ("image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max")
# Image-level labels of the release: the 22 local classes, then the 6 global ones.
GLOBAL_LABELS = ("COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", NO_FINDING)
GLOBAL_FROM_FINDING = {"pneumonia": "Pneumonia"}
PAPER_TRAIN_IMAGES, PAPER_TEST_IMAGES = 15_000, 3_000

# The faults Variant.DIRTY injects, as (file, row) -> the reason the reader must quarantine it with.
# Train rows 1-6 are image 0's two findings by its three radiologists; test rows 1-2 are two normal images.
DIRT = {
    VINDR_CXR.key: {
        (TRAIN_CSV, 2): "inverted_box",
        (TRAIN_CSV, 3): "box_outside_image",
        (TRAIN_CSV, 4): "missing_coordinate",
        (TRAIN_CSV, 5): "unknown_class",
        (TRAIN_CSV, 7): "duplicate_row",  # a copy of row 6
        (TEST_CSV, 1): "missing_image",  # its DICOM is not written
        (TEST_CSV, 2): "unreadable_image",  # its DICOM is truncated
    },
}
UNKNOWN_CLASS = "Lung nodule"  # not a VinDr-CXR class (the release says "Nodule/Mass")


def image_id_for(seed: int, split: str, index: int) -> str:
    """32 hex digits, like the release's ids."""
    return hashlib.md5(f"vindr-cxr/{seed}/{split}/{index}".encode()).hexdigest()


def write_dicom(path: Path, stored: np.ndarray, **settings) -> None:
    """``dicom_bytes`` written to ``path``."""
    write_file(path, dicom_bytes(stored, **settings))


def dicom_bytes(
    stored: np.ndarray,
    *,
    photometric: str,
    bits_stored: int,
    window: tuple[float, float] | None,
    voi_lut: np.ndarray | None = None,
    sex: str | None = None,
    view: str | None = None,
    age: int | None = None,
    uid_key: str = "",
) -> bytes:
    """An uncompressed explicit VR little endian DX image; UIDs derived from ``uid_key`` (deterministic).

    ``voi_lut`` (one output value per stored value, 12-bit entries) becomes a VOI LUT Sequence, which a
    viewer prefers over the window.
    """
    sop_instance = generate_uid(entropy_srcs=[uid_key, "sop"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DIGITAL_XRAY_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DIGITAL_XRAY_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[uid_key, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[uid_key, "series"])
    ds.Modality = "DX"
    if sex is not None:
        ds.PatientSex = sex
    if age is not None:
        ds.PatientAge = f"{age:03d}Y"
    if view is not None:
        ds.ViewPosition = view
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = (int(v) for v in stored.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = (round(float(v), 1) for v in window)
    if voi_lut is not None:
        item = Dataset()
        # 12-bit entries: pydicom indexes an 8-bit LUT with uint8 and would wrap for long LUTs.
        item.add_new(0x00283002, "US", [len(voi_lut), 0, 12])  # LUT Descriptor
        item.add_new(0x00283006, "US", [int(v) for v in voi_lut])  # LUT Data
        item.LUTExplanation = "SOFT GAMMA"
        ds.VOILUTSequence = [item]
    ds.PixelData = stored.astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write(out_root: Path, seed: int, variant: Variant) -> dict[str, dict[str, int]]:
    root = VINDR_CXR.root(out_root)
    dirty = variant is Variant.DIRTY
    counts = {"dicoms": 0}
    for split, size in (("train", TRAIN_IMAGES), ("test", TEST_IMAGES)):
        annotation_rows: list[list[str]] = []
        label_rows: list[list[object]] = []
        for index in range(size):
            image_id = image_id_for(seed, split, index)
            rng = rng_for(seed, "vindr", split, index)
            case = _case(split, index, rng)
            width, height = _image_size(rng)
            for rad in _radiologists(split, index, rng):
                found = [p for p in case.findings if not _missed(split, index, rng)]
                boxes = [_pixel_box(p, width, height, rng) for p in found]
                annotation_rows += [[image_id, rad, p.finding.vindr, *box] for p, box in zip(found, boxes)]
                if not found:
                    annotation_rows.append([image_id, rad, NO_FINDING, "", "", "", ""])
                label_rows.append(_image_labels(image_id, rad if split == "train" else None, found))
            if dirty and (split, index) == ("train", 0):
                _inject_train_faults(annotation_rows, width)
            if dirty and (split, index) == ("test", 0):
                continue  # its DICOM is missing
            path = root / split / f"{image_id}.dicom"
            stored, settings = _case_dicom(case, width, height, index, rng)
            write_dicom(path, stored, **settings, uid_key=f"{seed}/{split}/{image_id}")
            if dirty and (split, index) == ("test", 1):
                path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
            counts["dicoms"] += 1
        file = TRAIN_CSV if split == "train" else TEST_CSV
        header = list(COLUMNS) if split == "train" else ["image_id", "rad_ID", *COLUMNS[2:]]
        _write_csv(root / file, header, annotation_rows)
        label_header = (["image_id", "rad_id"] if split == "train" else ["image_id"]) + _label_columns(split)
        _write_csv(root / "annotations" / f"image_labels_{split}.csv", label_header, label_rows)
        counts[f"{split}_images"] = size
        counts[f"{split}_annotation_rows"] = len(annotation_rows)
    return {VINDR_CXR.key: counts}


def _case(split: str, index: int, rng: np.random.Generator) -> Case:
    """Train image 0 always shows cardiomegaly and a left effusion and test images 0-1 are normal, so
    the dirty variant's faults land on known rows; every other case is sampled."""
    if (split, index) == ("train", 0):
        placed = [
            PlacedFinding(FINDINGS_BY_KEY[key], region, region_box(region, rng))
            for key, region in (
                ("cardiomegaly", "cardiac silhouette"),
                ("effusion", "left costophrenic angle"),
            )
        ]
        return Case(sex="F", age=64, view="PA", findings=placed)
    if split == "test" and index < 2:
        return Case(sex="M", age=41, view="PA")
    case = sample_case(rng, lateral_fraction=0.0, normal_fraction=0.35, uncertain_fraction=0.0)
    case.findings = [p for p in case.findings if p.finding.vindr]  # support devices are no VinDr class
    return case


def _missed(split: str, index: int, rng: np.random.Generator) -> bool:
    """A train radiologist misses a finding now and then (never on image 0, whose rows are faulted);
    the test consensus misses nothing."""
    return split == "train" and index > 0 and bool(rng.random() < 0.15)


def _image_size(rng: np.random.Generator) -> tuple[int, int]:
    """Small and never square; about one image in five is landscape."""
    width = int(rng.integers(96, 121))
    ratio = rng.uniform(1.08, 1.3)
    height = round(width * ratio) if rng.random() < 0.8 else round(width / ratio)
    return width, height


def _radiologists(split: str, index: int, rng: np.random.Generator) -> list[str]:
    if split == "test":
        return [RADIOLOGISTS[int(rng.integers(len(RADIOLOGISTS)))]]  # the consensus, under one id
    return [RADIOLOGISTS[int(i)] for i in rng.choice(len(RADIOLOGISTS), size=3, replace=False)]


def _pixel_box(placed: PlacedFinding, width: int, height: int, rng: np.random.Generator) -> list[str]:
    """One radiologist's box around the drawn finding: each edge moved by up to 6% of the box size."""
    x1, y1, x2, y2 = placed.box
    dx, dy = 0.06 * (x2 - x1), 0.06 * (y2 - y1)
    jitter = rng.uniform(-1, 1, size=4) * np.array([dx, dy, dx, dy])
    box = np.clip(np.array([x1, y1, x2, y2]) + jitter, 0.0, 1.0) * np.array([width, height, width, height])
    return [f"{v:.2f}" for v in box]


def _image_labels(image_id: str, rad: str | None, found: list[PlacedFinding]) -> list[object]:
    present = {p.finding.vindr for p in found}
    present |= {GLOBAL_FROM_FINDING[p.finding.key] for p in found if p.finding.key in GLOBAL_FROM_FINDING}
    if not found:
        present.add(NO_FINDING)
    values = [int(name in present) for name in (*LOCAL_CLASSES, *GLOBAL_LABELS)]
    return [image_id, *([rad] if rad else []), *values]


def _label_columns(split: str) -> list[str]:
    names = [*LOCAL_CLASSES, *GLOBAL_LABELS]
    return names if split == "train" else [("Other disease" if n == "Other diseases" else n) for n in names]


def _case_dicom(
    case: Case, width: int, height: int, index: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """The stored pixels of a case and the other ``dicom_bytes`` settings: 12 or 14 bits, MONOCHROME1 on
    every third image, a window, and on image 4 a VOI LUT Sequence."""
    bits = 12 if index % 2 == 0 else 14
    stored = to_uint16(render_radiograph(case, width, height, rng), bits)
    photometric = "MONOCHROME1" if index % 3 == 1 else "MONOCHROME2"
    if photometric == "MONOCHROME1":
        stored = (2**bits - 1 - stored).astype(np.uint16)
    full = 2**bits
    window = (full / 2 * rng.uniform(0.95, 1.05), full * rng.uniform(0.8, 0.95))
    voi_lut = None
    if index == 4 and bits == 12:  # one image per split carries a VOI LUT Sequence
        voi_lut = np.round(4095 * (np.arange(full) / (full - 1)) ** 0.8).astype(np.uint16)
    settings = {
        "photometric": photometric,
        "bits_stored": bits,
        "window": window,
        "voi_lut": voi_lut,
        "sex": None if index % 7 == 3 else case.sex,
        "view": case.view,
        "age": case.age,
    }
    return stored, settings


def _inject_train_faults(rows: list[list[str]], width: int) -> None:
    """Rows 1-6 are image 0: (rad A, rad B, rad C) x (cardiomegaly, effusion). See ``DIRT``."""
    rows[1][3], rows[1][5] = rows[1][5], rows[1][3]  # row 2: x_min > x_max
    rows[2][3], rows[2][5] = f"{width + 10:.2f}", f"{width + 60:.2f}"  # row 3: wholly right of the image
    rows[3][3] = ""  # row 4: x_min missing
    rows[4][2] = UNKNOWN_CLASS  # row 5
    rows.insert(6, list(rows[5]))  # row 7 repeats row 6


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


SCALE_DICOM_POOL = 16  # distinct pixel arrays the DICOMs of the paper-scale root cycle through


def _dicom_pool(seed: int) -> list[tuple[np.ndarray, dict]]:
    """(stored pixels, ``dicom_bytes`` settings) of a few cases: 12- and 14-bit, both photometric
    interpretations and a VOI LUT among them, as in the sample."""
    pool = []
    for index in range(SCALE_DICOM_POOL):
        rng = rng_for(seed, "vindr", "dicom pool", index)
        case = sample_case(rng, lateral_fraction=0.0, normal_fraction=0.35, uncertain_fraction=0.0)
        width, height = _image_size(rng)
        pool.append(_case_dicom(case, width, height, index, rng))
    return pool


def _write_scale_dicoms(out_root: Path, seed: int, items: list[tuple[str, int, str]]) -> int:
    """A ``FileJobs`` job: (path, pool index, UID key) per DICOM; UIDs differ per file."""
    pool = pool_of(_dicom_pool, seed)
    written = 0
    for path, index, uid_key in items:
        stored, settings = pool[index]
        written += complete_file(
            out_root / path, functools.partial(dicom_bytes, stored, **settings, uid_key=uid_key)
        )
    return written


def write_scale(
    out_root: Path, seed: int, studies: int, files: FileJobs | None = None
) -> dict[str, dict[str, int]]:
    """The annotation and image-label CSVs at paper scale: 15,000 train and 3,000 test images per
    MIMIC-CXR's 227,835 studies, 70% of them "No finding" as in the release. With ``files`` the DICOMs
    are queued there and boxes lie in their (small) pixel space; otherwise there are none and the sizes
    are real ones."""
    root = VINDR_CXR.root(out_root)
    fraction = studies / PAPER_MIMIC_STUDIES
    counts: dict[str, int] = {}
    for split, paper_size in (("train", PAPER_TRAIN_IMAGES), ("test", PAPER_TEST_IMAGES)):
        rng = rng_for(seed, "vindr", "scale", split)
        size = max(1, round(paper_size * fraction))
        ids = np.array([image_id_for(seed, f"scale-{split}", i) for i in range(size)])
        rads_per_image = 3 if split == "train" else 1
        image_of_rater = np.repeat(np.arange(size), rads_per_image)
        # distinct radiologists per image: the first columns of a random permutation of R1..R17
        permutations = np.argsort(rng.random((size, len(RADIOLOGISTS))), axis=1)[:, :rads_per_image]
        rater = permutations.reshape(-1) + 1
        abnormal = rng.random(size) >= 0.7
        boxes_per_rater = np.where(abnormal[image_of_rater], rng.integers(1, 4, size=image_of_rater.size), 0)
        # one row per box, or one "No finding" row for a rater without boxes
        rows_per_rater = np.maximum(boxes_per_rater, 1)
        row_rater = np.repeat(np.arange(image_of_rater.size), rows_per_rater)
        has_box = boxes_per_rater[row_rater] > 0
        classes = np.array(LOCAL_CLASSES + (NO_FINDING,))
        class_index = np.where(
            has_box, rng.integers(0, len(LOCAL_CLASSES), size=row_rater.size), len(LOCAL_CLASSES)
        )
        width, height = rng.integers(2000, 3072, size=size), rng.integers(2000, 3072, size=size)
        if files is not None:
            pool = rng_for(seed, "vindr", "pool variants", split).integers(0, SCALE_DICOM_POOL, size=size)
            height, width = np.array([stored.shape for stored, _ in pool_of(_dicom_pool, seed)])[pool].T
        row_image = image_of_rater[row_rater]
        x1 = rng.uniform(0.05, 0.6, size=row_rater.size) * width[row_image]
        y1 = rng.uniform(0.05, 0.6, size=row_rater.size) * height[row_image]
        x2 = x1 + rng.uniform(0.05, 0.35, size=row_rater.size) * width[row_image]
        y2 = y1 + rng.uniform(0.05, 0.35, size=row_rater.size) * height[row_image]
        rad_column = "rad_id" if split == "train" else "rad_ID"
        annotations = pl.DataFrame(
            {
                "image_id": ids[row_image],
                rad_column: np.char.add("R", rater[row_rater].astype(str)),
                "class_name": classes[class_index],
                **{
                    name: pl.Series(values).round(2).set(pl.Series(~has_box), None)
                    for name, values in (("x_min", x1), ("y_min", y1), ("x_max", x2), ("y_max", y2))
                },
            }
        )
        file = TRAIN_CSV if split == "train" else TEST_CSV
        write_table(root / file, annotations.write_csv(float_precision=2))
        local = np.zeros((image_of_rater.size, len(LOCAL_CLASSES)), dtype=np.int8)
        np.add.at(local, (row_rater[has_box], class_index[has_box]), 1)
        global_labels = np.zeros((image_of_rater.size, len(GLOBAL_LABELS)), dtype=np.int8)
        global_labels[:, GLOBAL_LABELS.index(NO_FINDING)] = boxes_per_rater == 0
        one_hot = np.minimum(np.hstack([local, global_labels]), 1)
        labels = pl.DataFrame({"image_id": ids[image_of_rater]})
        if split == "train":
            labels = labels.with_columns(pl.Series("rad_id", np.char.add("R", rater.astype(str))))
        labels = labels.hstack(pl.DataFrame(one_hot, schema=_label_columns(split)))
        write_table(root / "annotations" / f"image_labels_{split}.csv", labels.write_csv())
        if files is not None:
            files.add(
                _write_scale_dicoms,
                [
                    (
                        f"{VINDR_CXR.folder}/{split}/{image_id}.dicom",
                        int(index),
                        f"{seed}/scale-{split}/{image_id}",
                    )
                    for image_id, index in zip(ids, pool, strict=True)
                ],
                "vindr_cxr DICOMs",
            )
        counts[f"{split}_images"] = size
        counts[f"{split}_annotation_rows"] = annotations.height
    return {VINDR_CXR.key: counts}
