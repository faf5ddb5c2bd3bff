"""The CheXpert-Plus reader on the synthetic release: reports, labels, quarantine reasons, accounting."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from radvlm_pipeline.images import ImageCheck
from radvlm_pipeline.sample_data import chexpert as writer
from radvlm_pipeline.sources import chexpert, chexpert_plus
from radvlm_pipeline.sources.base import DatasetUnavailable, ReaderOptions
from radvlm_pipeline.sources.checks import accounting_problems, image_problems, split_leak_problems

CSV_FILE = "df_chexpert_plus_240401.csv"
LABELS_FILE = "chexbert_labels/report_fixed.json"
DIRT = writer.DIRT["chexpert_plus"]


@pytest.fixture(scope="module")
def clean(clean_root):
    return chexpert_plus.read(clean_root, ReaderOptions())


@pytest.fixture(scope="module")
def dirty(dirty_root):
    return chexpert_plus.read(dirty_root, ReaderOptions())


def csv_rows(root: Path) -> list[dict[str, str]]:
    with (root / "chexpert-plus" / CSV_FILE).open(newline="") as handle:
        return list(csv.DictReader(handle))


def label_lines(root: Path) -> list[str]:
    return (root / "chexpert-plus" / LABELS_FILE).read_text().splitlines()


def numbers(items: list[str], image_id: str) -> list[int]:
    """1-based record numbers of the CSV rows or label lines that name the image."""
    return [i for i, item in enumerate(items, start=1) if f"{image_id}.jpg" in item]


def test_frontal_images_with_reports_in_train_and_validate(clean_root, clean):
    rows = csv_rows(clean_root)
    frontal = [r for r in rows if r["frontal_lateral"] == "Frontal"]
    assert clean.images.height == len(frontal)
    counts = dict(clean.images.group_by("split").len().iter_rows())
    assert set(counts) == {"train", "validate"} and min(counts.values()) >= 10
    assert clean.reports.height == clean.labels.height == clean.images.height  # one of each per image
    assert clean.quarantine["reason"].unique().to_list() == ["lateral_view"]
    assert accounting_problems(clean.accounting, clean.quarantine) == []
    assert split_leak_problems(clean.images) == []
    assert clean.facts["images_without_labels"] == 0


def test_report_is_findings_else_impression(clean_root, clean):
    rows = {r["path_to_image"]: r for r in csv_rows(clean_root)}
    reports = clean.reports.join(clean.images.select("image_id", "path"), on="image_id")
    with_findings = reports.filter(pl.col("findings").is_not_null()).row(0, named=True)
    impression_only = reports.filter(pl.col("findings").is_null()).row(0, named=True)
    raw = rows[f"{with_findings['image_id']}.jpg"]
    assert (
        with_findings["report"] == raw["section_findings"] and "\n" in with_findings["report"]
    )  # multi-line kept
    assert with_findings["impression"] == raw["section_impression"]
    assert (
        impression_only["report"]
        == impression_only["impression"]
        == rows[f"{impression_only['image_id']}.jpg"]["section_impression"]
    )
    assert clean.reports["path"].unique().to_list() == [CSV_FILE]
    assert (
        clean.facts["reports_from_findings"] + clean.facts["reports_from_impression"] == clean.reports.height
    )
    # Reports compare with prior studies, so the prior-removal stage has work to do.
    assert clean.reports["report"].str.contains(r"(?i)prior|previous|unchanged|since").any()


def test_images_are_the_png_release(clean_root, clean):
    image = clean.images.filter(pl.col("image_id") == "train/patient00001/study1/view1_frontal").row(
        0, named=True
    )
    assert image["path"] == "PNG/train/patient00001/study1/view1_frontal.png" == image["original_path"]
    assert (image["subject_id"], image["study_id"], image["split"]) == (
        "patient00001",
        "patient00001/study1",
        "train",
    )
    with Image.open(clean_root / "chexpert-plus" / image["path"]) as png:
        assert png.format == "PNG" and (image["width"], image["height"]) == png.size


def test_labels_come_from_the_json_lines(clean_root, clean):
    line = json.loads(label_lines(clean_root)[0])
    image_id = line["path_to_image"].removesuffix(".jpg")
    labels = clean.labels.filter(pl.col("image_id") == image_id).row(0, named=True)
    expected = {1.0: True, 0.0: False, -1.0: False, None: None}  # uncertain -> absent (the paper)
    for name in writer.CHEXPERT_LABEL_ORDER:
        assert labels[name] is expected[line[name]], name


def test_patients_and_splits_agree_with_chexpert(clean_root, clean):
    chexpert_images = chexpert.read(clean_root, ReaderOptions(image_check=ImageCheck.HEADER)).images
    joined = clean.images.join(chexpert_images, on="image_id", how="left", suffix="_chexpert")
    assert joined["subject_id_chexpert"].is_not_null().all()
    assert (joined["split"] == joined["split_chexpert"]).all()
    assert (joined["sex"] == joined["sex_chexpert"]).all()


def test_referenced_images_exist_and_decode(clean_root, clean, tmp_path):
    assert image_problems(clean.images, clean_root, tmp_path) == []


def test_dirty_rows_and_lines_quarantined_with_their_reason(dirty_root, dirty):
    rows = [json.dumps(r) for r in csv_rows(dirty_root)]
    lines = label_lines(dirty_root)
    invalid = dirty.quarantine.filter(pl.col("kind") == "invalid")
    reasons = {
        (file, row): reason for file, row, reason in invalid.select("file", "row", "reason").iter_rows()
    }
    malformed = next(i for i, line in enumerate(lines, start=1) if not line.endswith("}"))
    assert reasons == {
        (CSV_FILE, numbers(rows, DIRT["empty_report"])[0]): "empty_report",
        (CSV_FILE, numbers(rows, DIRT["missing_image"])[0]): "missing_image",
        (CSV_FILE, numbers(rows, DIRT["duplicate_row"])[1]): "duplicate_row",
        (LABELS_FILE, numbers(lines, DIRT["duplicate_row"])[1]): "duplicate_row",
        (LABELS_FILE, numbers(lines, DIRT["unknown_label_value"])[0]): "unknown_label_value",
        (LABELS_FILE, numbers(lines, DIRT["unknown_image"])[0]): "unknown_image",
        (LABELS_FILE, malformed): "malformed_json",
        # The label lines of quarantined images go with them.
        (LABELS_FILE, numbers(lines, DIRT["empty_report"])[0]): "image_rejected",
        (LABELS_FILE, numbers(lines, DIRT["missing_image"])[0]): "image_rejected",
    }
    assert malformed == numbers(lines, DIRT["malformed_json"])[0] + 1
    # An image whose label line is bad keeps its report, without labels.
    assert dirty.images.filter(pl.col("image_id") == DIRT["unknown_label_value"]).height == 1
    assert dirty.labels.filter(pl.col("image_id") == DIRT["unknown_label_value"]).is_empty()
    assert dirty.facts["images_without_labels"] == 1
    assert dirty.reports.filter(pl.col("image_id") == DIRT["duplicate_row"]).height == 1


def test_dirty_accounting_balances(dirty_root, dirty):
    assert accounting_problems(dirty.accounting, dirty.quarantine) == []
    rows_in = dict(dirty.accounting.select("file", "rows_in").iter_rows())
    assert rows_in == {CSV_FILE: len(csv_rows(dirty_root)), LABELS_FILE: len(label_lines(dirty_root))}


def test_without_labels_file_reports_still_read(tmp_path, clean_root):
    shutil.copytree(clean_root / "chexpert-plus", tmp_path / "chexpert-plus")
    (tmp_path / "chexpert-plus" / LABELS_FILE).unlink()
    tables = chexpert_plus.read(tmp_path, ReaderOptions(image_check=ImageCheck.HEADER))
    assert tables.labels.is_empty() and tables.reports.height > 0
    assert tables.facts["labels_file"].startswith("absent")


def test_missing_folder_or_csv_is_unavailable(tmp_path):
    with pytest.raises(DatasetUnavailable, match=str(tmp_path / "chexpert-plus")):
        chexpert_plus.read(tmp_path, ReaderOptions())
    (tmp_path / "chexpert-plus").mkdir()
    with pytest.raises(DatasetUnavailable, match=CSV_FILE):
        chexpert_plus.read(tmp_path, ReaderOptions())


def test_scale_mode_writes_readable_metadata(tmp_path):
    counts = writer.write_scale(tmp_path, seed=0, studies=3000)
    tables = chexpert_plus.read(tmp_path, ReaderOptions(image_check=ImageCheck.EXISTS))
    rows_in = dict(tables.accounting.select("file", "rows_in").iter_rows())
    assert rows_in == {
        CSV_FILE: counts["chexpert_plus"]["rows"],
        LABELS_FILE: counts["chexpert_plus"]["label_lines"],
    }
    # Metadata only: no pixels, so every frontal image is missing and its label line goes with it.
    assert set(tables.quarantine["reason"]) == {"lateral_view", "missing_image", "image_rejected"}
    assert accounting_problems(tables.accounting, tables.quarantine) == []
