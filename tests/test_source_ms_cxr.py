"""The MS-CXR reader on the synthetic sample: phrase boxes on MIMIC-CXR images, MIMIC-CXR's splits, faults."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import polars as pl
import pytest

from radvlm_pipeline.sample_data import mimic
from radvlm_pipeline.sample_data.common import Variant
from radvlm_pipeline.sources import checks, mimic_cxr, ms_cxr
from radvlm_pipeline.sources.base import DatasetUnavailable, ReaderOptions

SEED = 0


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[Variant, Path]:
    out = {}
    for variant in Variant:
        out[variant] = tmp_path_factory.mktemp(f"ms-cxr-{variant.value}")
        mimic.write(out[variant], SEED, variant)
    return out


@pytest.fixture(scope="module")
def mimic_tables(roots):
    return {variant: mimic_cxr.read(root, ReaderOptions()) for variant, root in roots.items()}


@pytest.fixture(scope="module")
def clean(roots, mimic_tables):
    return ms_cxr.read(
        roots[Variant.CLEAN], ReaderOptions(), {"mimic_cxr": mimic_tables[Variant.CLEAN].images}
    )


@pytest.fixture(scope="module")
def dirty(roots, mimic_tables):
    return ms_cxr.read(
        roots[Variant.DIRTY], ReaderOptions(), {"mimic_cxr": mimic_tables[Variant.DIRTY].images}
    )


def csv_rows(root: Path) -> list[dict]:
    return list(csv.DictReader((root / "ms-cxr" / ms_cxr.ANNOTATIONS).open()))


def test_every_box_is_a_phrase_box_on_a_mimic_image_with_mimics_split(clean, roots, mimic_tables):
    rows = csv_rows(roots[Variant.CLEAN])
    assert clean.boxes.height == len(rows)
    assert clean.facts["phrases"] == len({(r["dicom_id"], r["label_text"]) for r in rows}) < len(rows)
    mimic_split = dict(mimic_tables[Variant.CLEAN].images.select("image_id", "split").iter_rows())
    assert dict(clean.images.select("image_id", "split").iter_rows()) == {
        r["dicom_id"]: mimic_split[r["dicom_id"]] for r in rows
    }
    assert set(clean.images["split"]) == {"train", "validate", "test"}
    assert set(clean.boxes["kind"]) == {"phrase"}
    assert checks.split_leak_problems(clean.images) == []
    assert checks.box_problems(clean.boxes) == []


def test_a_known_box_is_normalised_from_xywh(clean, roots):
    first = csv_rows(roots[Variant.CLEAN])[0]
    x, y, w, h, width, height = (float(first[k]) for k in ("x", "y", "w", "h", "image_width", "image_height"))
    box = clean.boxes.row(0, named=True)
    assert (box["image_id"], box["label"], box["category"]) == (
        first["dicom_id"],
        first["label_text"],
        first["category_name"],
    )
    assert (box["x1"], box["y1"], box["x2"], box["y2"]) == pytest.approx(
        (x / width, y / height, (x + w) / width, (y + h) / height)
    )
    assert (box["px_x1"], box["px_y1"], box["px_x2"], box["px_y2"]) == (x, y, x + w, y + h)
    assert box["box_id"] == f"{first['dicom_id']}:1"


def test_phrases_agree_with_the_studys_labels(clean, mimic_tables):
    """MS-CXR phrases come from the report of the same study: its CheXpert label for the category is positive."""
    tables = mimic_tables[Variant.CLEAN]
    study_of = dict(tables.images.select("image_id", "study_id").iter_rows())
    labels = {row["study_id"]: row for row in tables.labels.iter_rows(named=True)}
    for image_id, category in clean.boxes.select("image_id", "category").unique().iter_rows():
        assert labels[study_of[image_id]][category] is True


def test_dirty_sample_quarantines_each_fault_and_repairs_a_blank_width(dirty, clean, roots, mimic_tables):
    faults = mimic.faults(SEED)["ms_cxr"]
    quarantined = {
        (f, r): reason for f, r, reason in dirty.quarantine.select("file", "row", "reason").iter_rows()
    }
    assert quarantined == {(f.file, f.row): f.reason for f in faults.values() if f.reason is not None}
    repaired = csv_rows(roots[Variant.DIRTY])[faults["missing_image_width"].row - 1]
    assert repaired["image_width"] == ""
    width = (
        mimic_tables[Variant.DIRTY].images.filter(pl.col("image_id") == repaired["dicom_id"]).item(0, "width")
    )
    box = dirty.boxes.filter(
        pl.col("box_id") == f"{repaired['dicom_id']}:{faults['missing_image_width'].row}"
    )
    assert box.item(0, "x1") == pytest.approx(float(repaired["x"]) / width)
    assert dirty.facts["image_sizes_from_mimic_cxr"] == 1
    assert dirty.boxes.height == clean.boxes.height + 1 and dirty.images.equals(clean.images)


@pytest.mark.parametrize("which", ["clean", "dirty"])
def test_every_row_is_accounted_for(request, which):
    tables = request.getfixturevalue(which)
    assert checks.accounting_problems(tables.accounting, tables.quarantine) == []
    assert tables.accounting.item(0, "rows_out") == tables.boxes.height


def test_a_size_disagreeing_with_mimic_is_quarantined(tmp_path, roots, mimic_tables):
    shutil.copytree(roots[Variant.CLEAN] / "ms-cxr", tmp_path / "ms-cxr")
    path = tmp_path / "ms-cxr" / ms_cxr.ANNOTATIONS
    frame = pl.read_csv(path, infer_schema=False)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit("999"))
        .otherwise("image_height")
        .alias("image_height")
    ).write_csv(path)
    tables = ms_cxr.read(tmp_path, ReaderOptions(), {"mimic_cxr": mimic_tables[Variant.CLEAN].images})
    assert tables.quarantine.select("row", "reason").rows() == [(1, "image_size_mismatch")]


def test_missing_folder_is_reported_by_name(tmp_path, mimic_tables):
    with pytest.raises(DatasetUnavailable, match="ms-cxr"):
        ms_cxr.read(tmp_path, ReaderOptions(), {"mimic_cxr": mimic_tables[Variant.CLEAN].images})
    (tmp_path / "ms-cxr").mkdir()
    with pytest.raises(DatasetUnavailable, match="MS_CXR_Local_Alignment_v1.0.0.csv"):
        ms_cxr.read(tmp_path, ReaderOptions(), {"mimic_cxr": mimic_tables[Variant.CLEAN].images})
