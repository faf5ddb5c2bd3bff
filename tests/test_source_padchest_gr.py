"""The PadChest-GR reader on the synthetic sample: frontal filter, splits, phrase boxes, reports, quarantine."""

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from PIL import Image
from sample_digests import folder_digests

from radvlm_pipeline.datasets import PADCHEST_GR
from radvlm_pipeline.images import ImageCheck
from radvlm_pipeline.sample_data import padchest
from radvlm_pipeline.sample_data.common import Variant
from radvlm_pipeline.sources import checks, padchest_gr
from radvlm_pipeline.sources.base import DatasetUnavailable, ReaderOptions

SEED = 0


@pytest.fixture(scope="session")
def clean_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("padchest_clean")
    padchest.write(root, SEED, Variant.CLEAN)
    return root


@pytest.fixture(scope="session")
def dirty_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("padchest_dirty")
    padchest.write(root, SEED, Variant.DIRTY)
    return root


@pytest.fixture(scope="session")
def clean(clean_root):
    return padchest_gr.read(clean_root, ReaderOptions())


@pytest.fixture(scope="session")
def dirty(dirty_root):
    return padchest_gr.read(dirty_root, ReaderOptions())


def released(root: Path):
    folder = root / PADCHEST_GR.folder
    entries = json.loads((folder / padchest_gr.GROUNDED_JSON).read_text(encoding="utf-8"))
    master = pl.read_csv(folder / padchest_gr.MASTER_TABLE, infer_schema=False)
    table = pl.read_csv(folder / padchest_gr.LABELS_CSV, infer_schema=False)
    return entries, master, table


def test_frontal_images_per_split(clean_root, clean):
    entries, master, table = released(clean_root)
    projection = dict(table.select("ImageID", "Projection").iter_rows())
    split = dict(master.select("ImageID", "split").unique().iter_rows())
    frontal = [e["ImageID"] for e in entries if projection[e["ImageID"]] in ("PA", "AP")]
    renamed = {"train": "train", "validation": "validate", "test": "test"}
    expected = (
        pl.DataFrame({"split": [renamed[split[i]] for i in frontal]}).group_by("split").len().sort("split")
    )
    assert clean.images.group_by("split").len().sort("split").rows() == expected.rows()
    assert set(clean.images["split"]) == {"train", "validate", "test"}
    assert set(clean.images["view"]) == {"PA", "AP"}

    laterals = len(entries) - len(frontal)
    assert laterals > 0
    assert clean.quarantine.group_by("kind", "reason").len().rows() == [
        ("filtered", "lateral_view", laterals)
    ]


def test_known_entry_becomes_image_report_and_phrase_boxes(clean_root, clean):
    entries, master, _ = released(clean_root)
    entry = entries[0]
    image_id = entry["ImageID"]
    image = clean.images.filter(pl.col("image_id") == image_id).row(0, named=True)
    study = master.filter(pl.col("ImageID") == image_id).row(0, named=True)
    assert image["path"] == image["original_path"] == f"images_grounding/{image_id}"
    assert (image["width"], image["height"]) == Image.open(
        clean_root / PADCHEST_GR.folder / image["path"]
    ).size
    assert (image["study_id"], image["subject_id"], image["sex"]) == (
        entry["StudyID"],
        study["PatientID"],
        study["PatientSex_DICOM"],
    )

    report = clean.reports.filter(pl.col("image_id") == image_id).row(0, named=True)
    assert report["report"] == " ".join(f["sentence_en"] for f in entry["findings"])
    assert report["path"] == padchest_gr.GROUNDED_JSON and report["study_id"] == entry["StudyID"]

    grounded = [f for f in entry["findings"] if f["boxes"]]
    boxes = clean.boxes.filter(pl.col("image_id") == image_id).sort("box_id")
    assert boxes.height == sum(len(f["boxes"]) for f in grounded)
    first = boxes.row(0, named=True)
    assert [first["x1"], first["y1"], first["x2"], first["y2"]] == grounded[0]["boxes"][0]
    assert (first["kind"], first["label"], first["category"]) == (
        "phrase",
        grounded[0]["sentence_en"],
        ", ".join(grounded[0]["labels"]),
    )
    assert first["px_x1"] is None and first["annotators"] == 1


def test_findings_without_boxes_only_feed_the_report(clean):
    assert clean.reports.height == clean.images.height
    sentences_with_boxes = set(clean.boxes["label"])
    assert "No pleural effusion." not in sentences_with_boxes
    assert clean.reports["report"].str.contains("No pleural effusion.", literal=True).any()


def test_clean_tables_pass_the_source_checks(clean_root, clean):
    assert checks.accounting_problems(clean.accounting, clean.quarantine) == []
    assert checks.box_problems(clean.boxes) == []
    assert checks.split_leak_problems(clean.images) == []
    assert checks.image_problems(clean.images, clean_root, clean_root) == []
    assert clean.boxes["box_id"].is_unique().all()
    assert clean.facts["sizes_from_png"] == clean.images.height
    assert clean.facts["png_size_differs_from_padchest_table"] == 0


def test_dirty_entries_are_quarantined_with_their_reasons(dirty):
    invalid = dirty.quarantine.filter(pl.col("kind") == "invalid")
    assert {
        (file, row): reason for file, row, reason in invalid.select("file", "row", "reason").iter_rows()
    } == padchest.DIRT[PADCHEST_GR.key]
    assert checks.accounting_problems(dirty.accounting, dirty.quarantine) == []
    assert checks.box_problems(dirty.boxes) == []
    details = dict(invalid.select("row", "detail").iter_rows())
    assert details[3] == "box [1.2, 0.3, 1.5, 0.6] lies wholly outside the image"
    assert "already has an entry at row 8" in details[9]
    assert "blank split" in details[6]
    assert set(dirty.quarantine.filter(pl.col("kind") == "filtered")["reason"]) == {"lateral_view"}


def test_a_normalised_coordinate_past_one_is_quarantined_not_clipped(clean_root, clean, tmp_path):
    """[0.5, 0.5, 1.3, 1.1] cannot be an overhang in a normalised release: clipped to [0.5, 0.5, 1, 1] it
    would train on a box nobody drew. A rounding overshoot within the tolerance is still clipped."""
    shutil.copytree(clean_root / PADCHEST_GR.folder, tmp_path / PADCHEST_GR.folder)
    path = tmp_path / PADCHEST_GR.folder / padchest_gr.GROUNDED_JSON
    entries = json.loads(path.read_text(encoding="utf-8"))
    kept = set(clean.images["image_id"])
    corrupt, overshoot = [
        row
        for row, entry in enumerate(entries, start=1)
        if entry["ImageID"] in kept and any(f["boxes"] for f in entry["findings"])
    ][:2]
    boxed = next(f for f in entries[corrupt - 1]["findings"] if f["boxes"])
    boxed["boxes"][0] = [0.5, 0.5, 1.3, 1.1]
    boxed = next(f for f in entries[overshoot - 1]["findings"] if f["boxes"])
    boxed["boxes"][0][2] = 1.004
    path.write_text(json.dumps(entries), encoding="utf-8")

    tables = padchest_gr.read(tmp_path, ReaderOptions())
    invalid = tables.quarantine.filter(pl.col("kind") == "invalid")
    assert invalid.select("row", "reason", "detail").rows() == [
        (
            corrupt,
            "coordinate_out_of_range",
            "box [0.5, 0.5, 1.3, 1.1] has a coordinate outside [0, 1] by more than 0.01, "
            "in a release whose boxes are normalised",
        )
    ]
    assert entries[corrupt - 1]["ImageID"] not in set(tables.images["image_id"])
    assert tables.facts["clipped_boxes"] == clean.facts["clipped_boxes"] + 1
    overshooting = tables.boxes.filter(pl.col("image_id") == entries[overshoot - 1]["ImageID"])
    assert overshooting["x2"].max() == 1.0
    assert checks.accounting_problems(tables.accounting, tables.quarantine) == []


def test_exists_check_takes_sizes_from_the_padchest_table(dirty_root):
    tables = padchest_gr.read(dirty_root, ReaderOptions(image_check=ImageCheck.EXISTS))
    reasons = dict(tables.quarantine.select("row", "reason").iter_rows())
    assert 1 not in reasons and reasons[2] == "missing_image"  # the truncated PNG is not decoded
    _, _, table = released(dirty_root)
    sizes = {
        i: (int(c), int(r)) for i, c, r in table.select("ImageID", "Columns_DICOM", "Rows_DICOM").iter_rows()
    }
    assert all(
        sizes[i] == (w, h) for i, w, h in tables.images.select("image_id", "width", "height").iter_rows()
    )
    assert tables.facts["sizes_from_png"] == 0


def test_writing_twice_gives_identical_bytes(clean_root, tmp_path):
    padchest.write(tmp_path, SEED, Variant.CLEAN)
    assert folder_digests(tmp_path / PADCHEST_GR.folder) == folder_digests(clean_root / PADCHEST_GR.folder)


def test_pngs_are_16_bit_grayscale(clean_root, clean):
    path = clean_root / PADCHEST_GR.folder / clean.images["path"][0]
    with Image.open(path) as image:
        assert image.mode == "I;16"


def test_missing_folder_or_file(tmp_path):
    with pytest.raises(DatasetUnavailable, match="padchest-gr"):
        padchest_gr.read(tmp_path, ReaderOptions())
    (tmp_path / PADCHEST_GR.folder).mkdir()
    with pytest.raises(DatasetUnavailable, match="grounded_reports_20240819.json"):
        padchest_gr.read(tmp_path, ReaderOptions())


def test_write_scale_writes_paper_proportions_without_pixels(tmp_path):
    counts = padchest.write_scale(tmp_path, SEED, studies=22_784)  # a tenth of MIMIC-CXR
    assert counts[PADCHEST_GR.key]["grounded_entries"] == 456
    assert counts[PADCHEST_GR.key]["padchest_rows"] == 16_086
    entries, master, table = released(tmp_path)
    assert len(entries) == 456 and master.height == counts[PADCHEST_GR.key]["master_rows"]
    assert table.columns == list(padchest.LABELS_COLUMNS) and table.height == 16_086
    assert not any((tmp_path / PADCHEST_GR.folder / "images_grounding").iterdir())
