"""The CheXpert reader on the synthetic release: counts, values, quarantine reasons, accounting."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import polars as pl
import pytest
from PIL import Image
from sample_digests import folder_digests

from radvlm_pipeline.images import ImageCheck
from radvlm_pipeline.labels import UncertainPolicy
from radvlm_pipeline.sample_data import chexpert as writer
from radvlm_pipeline.sample_data.common import Variant
from radvlm_pipeline.sources import chexpert
from radvlm_pipeline.sources.base import DatasetUnavailable, ReaderOptions
from radvlm_pipeline.sources.checks import accounting_problems, image_problems, split_leak_problems

TRAIN_CSV = "CheXpert-v1.0-small/train.csv"
DIRT = writer.DIRT["chexpert"]


@pytest.fixture(scope="module")
def clean(clean_root):
    return chexpert.read(clean_root, ReaderOptions())


@pytest.fixture(scope="module")
def dirty(dirty_root):
    return chexpert.read(dirty_root, ReaderOptions())


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def row_number(rows: list[dict[str, str]], image_id: str, occurrence: int = 0) -> int:
    """1-based record number of the n-th row whose Path names the image."""
    matches = [i for i, row in enumerate(rows, start=1) if row["Path"].endswith(f"/{image_id}.jpg")]
    return matches[occurrence]


def test_frontal_images_of_every_split(clean_root, clean):
    expected = {
        "train": sum(
            r["Frontal/Lateral"] == "Frontal" for r in csv_rows(clean_root / "chexpert" / TRAIN_CSV)
        ),
        "validate": sum(
            r["Frontal/Lateral"] == "Frontal"
            for r in csv_rows(clean_root / "chexpert/CheXpert-v1.0-small/valid.csv")
        ),
        "test": sum(
            r["Path"].endswith("_frontal.jpg")
            for r in csv_rows(clean_root / "chexpert/CheXpert/test_labels.csv")
        ),
    }
    counts = dict(clean.images.group_by("split").len().iter_rows())
    assert counts == expected
    assert all(count >= 10 for count in counts.values())
    assert clean.labels.height == clean.images.height  # labels per image, as released
    assert clean.quarantine["reason"].unique().to_list() == ["lateral_view"]
    assert set(clean.quarantine["kind"]) == {"filtered"}
    assert accounting_problems(clean.accounting, clean.quarantine) == []
    assert split_leak_problems(clean.images) == []


def test_ids_paths_and_values_of_a_known_image(clean_root, clean):
    image_id = "train/patient00001/study1/view1_frontal"
    image = clean.images.filter(pl.col("image_id") == image_id).row(0, named=True)
    raw = next(
        r for r in csv_rows(clean_root / "chexpert" / TRAIN_CSV) if r["Path"].endswith(f"{image_id}.jpg")
    )
    assert image["subject_id"] == "patient00001"
    assert image["study_id"] == "patient00001/study1"
    assert image["path"] == f"CheXpert-v1.0-small/{image_id}.jpg" == image["original_path"]
    assert image["view"] == raw["AP/PA"] and image["view"] in ("AP", "PA")
    assert image["sex"] == {"Male": "M", "Female": "F"}[raw["Sex"]]
    with Image.open(clean_root / "chexpert" / image["path"]) as jpeg:
        assert (image["width"], image["height"]) == jpeg.size

    labels = clean.labels.filter(pl.col("image_id") == image_id).row(0, named=True)
    expected = {"1.0": True, "0.0": False, "-1.0": False, "": None}  # uncertain -> absent (the paper)
    for name in writer.CHEXPERT_LABEL_ORDER:
        assert labels[name] is expected[raw[name]], name


@pytest.mark.parametrize(
    ("policy", "value"),
    [(UncertainPolicy.ABSENT, False), (UncertainPolicy.PRESENT, True), (UncertainPolicy.NOT_MENTIONED, None)],
)
def test_uncertain_labels_follow_the_policy(clean_root, policy, value):
    rows = csv_rows(clean_root / "chexpert" / TRAIN_CSV)
    raw = next(r for r in rows if r["Frontal/Lateral"] == "Frontal" and "-1.0" in r.values())
    name = next(n for n in writer.CHEXPERT_LABEL_ORDER if raw[n] == "-1.0")
    image_id = raw["Path"].removeprefix("CheXpert-v1.0-small/").removesuffix(".jpg")
    tables = chexpert.read(clean_root, ReaderOptions(uncertain=policy, image_check=ImageCheck.HEADER))
    assert tables.labels.filter(pl.col("image_id") == image_id)[name].item() is value


def test_test_set_from_the_chexlocalize_labels(clean):
    test_images = clean.images.filter(pl.col("split") == "test")
    assert test_images["path"].str.starts_with("CheXpert/test/patient").all()
    assert test_images["sex"].is_null().all() and test_images["view"].is_null().all()
    test_labels = clean.labels.filter(pl.col("split") == "test")
    assert (
        not test_labels.select(pl.any_horizontal(pl.col(n).is_null() for n in writer.CHEXPERT_LABEL_ORDER))
        .to_series()
        .any()
    )
    assert clean.facts["test_set"].startswith("CheXpert/test_labels.csv")


def test_referenced_images_exist_and_decode(clean_root, clean, tmp_path):
    assert image_problems(clean.images, clean_root, tmp_path) == []


def test_dirty_rows_quarantined_with_their_reason(dirty_root, dirty):
    rows = csv_rows(dirty_root / "chexpert" / TRAIN_CSV)
    invalid = dirty.quarantine.filter(pl.col("kind") == "invalid")
    reasons = {
        (file, row): reason for file, row, reason in invalid.select("file", "row", "reason").iter_rows()
    }
    duplicated = row_number(rows, DIRT["duplicate_row"])
    assert reasons == {
        (TRAIN_CSV, row_number(rows, DIRT["unreadable_image"])): "unreadable_image",
        (TRAIN_CSV, row_number(rows, DIRT["missing_image"])): "missing_image",
        (TRAIN_CSV, row_number(rows, DIRT["unknown_label_value"])): "unknown_label_value",
        (TRAIN_CSV, duplicated + 1): "duplicate_row",
        (TRAIN_CSV, row_number(rows, DIRT["empty_path"]) + 1): "missing_value",  # the blank-Path copy
    }
    details = dict(invalid.select("reason", "detail").iter_rows())
    assert (
        "Cardiomegaly='2.0'" in details["unknown_label_value"]
        and "Edema='yes'" in details["unknown_label_value"]
    )
    assert details["duplicate_row"].endswith(f"repeats {TRAIN_CSV} row {duplicated}")
    assert not any("/tmp" in detail or str(dirty_root) in detail for detail in dirty.quarantine["detail"])

    kept = dirty.images.filter(
        pl.col("image_id").is_in([DIRT["duplicate_row"], DIRT["missing_sex"], DIRT["missing_ap_pa"]])
    )
    assert kept.height == 3  # the first of a duplicate pair is kept; blank Sex / AP/PA are not errors
    assert kept.filter(pl.col("image_id") == DIRT["missing_sex"])["sex"].item() is None
    assert kept.filter(pl.col("image_id") == DIRT["missing_ap_pa"])["view"].item() is None
    assert dirty.images.filter(
        pl.col("image_id").is_in([DIRT["unreadable_image"], DIRT["missing_image"]])
    ).is_empty()


def test_dirty_accounting_balances(dirty_root, dirty):
    assert accounting_problems(dirty.accounting, dirty.quarantine) == []
    train = dirty.accounting.filter(pl.col("file") == TRAIN_CSV).row(0, named=True)
    assert train["rows_in"] == len(csv_rows(dirty_root / "chexpert" / TRAIN_CSV))
    assert train["rows_invalid"] == 5
    assert dirty.images.filter(pl.col("split") == "train").height == train["rows_out"]


def test_existence_only_check_still_reads_sizes(dirty_root):
    tables = chexpert.read(dirty_root, ReaderOptions(image_check=ImageCheck.EXISTS))
    assert tables.images["width"].is_not_null().all()
    # A truncated JPEG has a readable header: only a decode catches it.
    assert "unreadable_image" not in tables.quarantine["reason"].to_list()
    assert "missing_image" in tables.quarantine["reason"].to_list()


def test_same_seed_writes_identical_bytes(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        writer.write(tmp_path / name, seed=seed, variant=Variant.DIRTY)
    assert folder_digests(tmp_path / "a") == folder_digests(tmp_path / "b")
    assert folder_digests(tmp_path / "a") != folder_digests(tmp_path / "c")


def test_missing_folder_or_file_is_unavailable(tmp_path, clean_root):
    with pytest.raises(DatasetUnavailable, match=str(tmp_path / "chexpert")):
        chexpert.read(tmp_path, ReaderOptions())
    shutil.copytree(clean_root / "chexpert", tmp_path / "chexpert")
    (tmp_path / "chexpert/CheXpert-v1.0-small/valid.csv").unlink()
    with pytest.raises(DatasetUnavailable, match="valid.csv"):
        chexpert.read(tmp_path, ReaderOptions())


def test_without_test_labels_the_test_split_is_empty_and_said_so(tmp_path, clean_root):
    shutil.copytree(clean_root / "chexpert", tmp_path / "chexpert")
    (tmp_path / "chexpert/CheXpert/test_labels.csv").unlink()
    tables = chexpert.read(tmp_path, ReaderOptions(image_check=ImageCheck.HEADER))
    assert set(tables.images["split"]) == {"train", "validate"}
    assert tables.facts["test_set"].startswith("absent")


def test_scale_mode_writes_readable_metadata(tmp_path):
    counts = writer.write_scale(tmp_path, seed=0, studies=3000)
    tables = chexpert.read(tmp_path, ReaderOptions(image_check=ImageCheck.EXISTS))
    rows_in = dict(tables.accounting.select("file", "rows_in").iter_rows())
    assert rows_in[TRAIN_CSV] == counts["chexpert"]["train_rows"] > 2000
    assert rows_in["CheXpert/test_labels.csv"] == counts["chexpert"]["test_rows"] >= 500
    assert set(tables.quarantine["reason"]) == {"lateral_view", "missing_image"}  # metadata only: no pixels
    assert accounting_problems(tables.accounting, tables.quarantine) == []
