"""The VinDr-CXR reader on the synthetic sample: DICOM conversion, box fusion, negatives, quarantine."""

import csv
from pathlib import Path

import numpy as np
import polars as pl
import pydicom
import pytest
from PIL import Image
from sample_digests import folder_digests

from radvlm_pipeline.datasets import VINDR_CXR
from radvlm_pipeline.layout import DERIVED_IMAGE_ROOTS
from radvlm_pipeline.sample_data import vindr
from radvlm_pipeline.sample_data.common import Variant
from radvlm_pipeline.sources import checks, vindr_cxr
from radvlm_pipeline.sources.base import DatasetUnavailable, ReaderOptions

SEED = 0


@pytest.fixture(scope="session")
def clean_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vindr_clean")
    vindr.write(root, SEED, Variant.CLEAN)
    return root


@pytest.fixture(scope="session")
def storage(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vindr_storage")


@pytest.fixture(scope="session")
def clean(clean_root, storage):
    return vindr_cxr.read(clean_root, ReaderOptions(storage_root=storage))


@pytest.fixture(scope="session")
def dirty(tmp_path_factory):
    root = tmp_path_factory.mktemp("vindr_dirty")
    vindr.write(root, SEED, Variant.DIRTY)
    return vindr_cxr.read(root, ReaderOptions(storage_root=tmp_path_factory.mktemp("vindr_dirty_storage")))


def annotation_rows(root: Path, file: str) -> list[dict]:
    with (root / VINDR_CXR.folder / file).open(newline="") as handle:
        return list(csv.DictReader(handle))


def dicom_size(root: Path, split: str, image_id: str) -> tuple[int, int]:
    header = pydicom.dcmread(root / VINDR_CXR.folder / split / f"{image_id}.dicom", stop_before_pixels=True)
    return int(header.Columns), int(header.Rows)


def test_images_per_split_and_negatives(clean_root, clean):
    assert clean.images.group_by("split").len().sort("split").rows() == [("test", 22), ("train", 50)]
    rows = annotation_rows(clean_root, vindr_cxr.TRAIN_CSV) + annotation_rows(clean_root, vindr_cxr.TEST_CSV)
    classes: dict[str, set] = {}
    for row in rows:
        classes.setdefault(row["image_id"], set()).add(row["class_name"])
    negatives = {image for image, names in classes.items() if names == {"No finding"}}
    boxed = set(clean.boxes["image_id"])
    assert set(clean.images["image_id"]) - boxed == negatives  # kept, with no boxes: detection negatives
    assert 0.2 < len(negatives) / clean.images.height < 0.45
    assert clean.facts["negative_images"] == len(negatives)


def test_three_radiologists_fuse_into_their_mean_box(clean_root, clean):
    image_id = vindr.image_id_for(SEED, "train", 0)
    width, height = dicom_size(clean_root, "train", image_id)
    drawn = [
        r
        for r in annotation_rows(clean_root, vindr_cxr.TRAIN_CSV)
        if r["image_id"] == image_id and r["class_name"] == "Cardiomegaly"
    ]
    assert len({r["rad_id"] for r in drawn}) == 3
    scale = np.array([width, height, width, height], dtype=float)
    mean = np.mean([[float(r[c]) for c in vindr_cxr.COORDINATES] for r in drawn], axis=0) / scale

    fused = clean.boxes.filter((pl.col("image_id") == image_id) & (pl.col("label") == "Cardiomegaly"))
    assert fused.height == 1
    box = fused.row(0, named=True)
    assert np.allclose([box["x1"], box["y1"], box["x2"], box["y2"]], mean, atol=1e-6)
    assert np.allclose([box["px_x1"], box["px_y1"], box["px_x2"], box["px_y2"]], mean * scale, atol=1e-4)
    assert (box["kind"], box["annotators"], box["score"]) == ("finding", 3, pytest.approx(1.0))


def test_test_boxes_are_the_consensus_as_released(clean_root, clean):
    first = next(
        r for r in annotation_rows(clean_root, vindr_cxr.TEST_CSV) if r["class_name"] != "No finding"
    )
    width, height = dicom_size(clean_root, "test", first["image_id"])
    expected = [
        float(first["x_min"]) / width,
        float(first["y_min"]) / height,
        float(first["x_max"]) / width,
        float(first["y_max"]) / height,
    ]
    matches = clean.boxes.filter(
        (pl.col("image_id") == first["image_id"]) & (pl.col("label") == first["class_name"])
    )
    assert any(
        np.allclose(row[:4], expected) and row[4] == 1
        for row in matches.select("x1", "y1", "x2", "y2", "annotators").iter_rows()
    )
    assert clean.facts["test_consensus_boxes"] == sum(
        r["class_name"] != "No finding" for r in annotation_rows(clean_root, vindr_cxr.TEST_CSV)
    )


def test_images_table_points_at_converted_pngs(clean_root, clean, storage):
    png_root = storage / DERIVED_IMAGE_ROOTS["vindr_cxr_png"]
    assert set(clean.images["dataset"]) == {"vindr_cxr_png"}
    for image in clean.images.iter_rows(named=True):
        assert image["path"] == f"{image['split']}/{image['image_id']}.png"
        assert image["original_path"] == f"{image['split']}/{image['image_id']}.dicom"
        assert (image["width"], image["height"]) == dicom_size(clean_root, image["split"], image["image_id"])
        assert Image.open(png_root / image["path"]).size == (image["width"], image["height"])
        assert image["width"] != image["height"]
    no_sex = clean.images.filter(
        pl.col("image_id") == vindr.image_id_for(SEED, "train", 3)
    )  # PatientSex absent
    assert no_sex["sex"].to_list() == [None]
    assert set(clean.images["sex"].drop_nulls()) == {"M", "F"}
    assert checks.image_problems(clean.images, clean_root, storage) == []


def test_every_png_shows_dense_tissue_bright_whatever_the_photometric(clean, storage):
    """The renderer darkens the lungs and brightens the spine; a MONOCHROME1 image left uninverted
    would show the opposite."""
    assert clean.facts["photometric_interpretations"] == {"MONOCHROME1": 24, "MONOCHROME2": 48}
    png_root = storage / DERIVED_IMAGE_ROOTS["vindr_cxr_png"]
    for path in clean.images["path"]:
        pixels = np.asarray(Image.open(png_root / path), dtype=float)
        height, width = pixels.shape
        rows = slice(int(0.40 * height), int(0.55 * height))
        lungs = (
            pixels[rows, int(0.20 * width) : int(0.30 * width)],
            pixels[rows, int(0.70 * width) : int(0.80 * width)],
        )
        spine = pixels[int(0.05 * height) : int(0.15 * height), int(0.48 * width) : int(0.52 * width)]
        # The clearer lung: a nodule or effusion drawn into one lung makes that one bright.
        assert min(lung.mean() for lung in lungs) < spine.mean(), path


def test_wbf_parameters_are_used_and_recorded(clean_root, clean, storage):
    assert (clean.facts["wbf_iou_thr"], clean.facts["wbf_skip_box_thr"], clean.facts["wbf_conf_type"]) == (
        0.1,  # the paper's code
        0.0,
        "avg",
    )
    strict = vindr_cxr.read(clean_root, ReaderOptions(storage_root=storage, wbf_iou_thr=0.95))
    assert strict.facts["wbf_iou_thr"] == 0.95
    assert strict.facts["fused_boxes"] > clean.facts["fused_boxes"]  # fewer boxes overlap enough to fuse
    assert clean.facts["radiologist_boxes_fused"] == strict.facts["radiologist_boxes_fused"]
    for facts in (clean.facts, strict.facts):
        assert facts["boxes_merged_by_fusion"] == facts["radiologist_boxes_fused"] - facts["fused_boxes"]
    assert (clean.facts["boxes_merged_by_fusion"], strict.facts["boxes_merged_by_fusion"]) == (108, 3)
    # test boxes are the released consensus, annotators 1: every box of several radiologists is fused
    assert clean.facts["fused_boxes_from_several_radiologists"] == 68
    assert clean.boxes.filter(pl.col("annotators") > 1).height == 68


def test_radiologists_who_disagree_on_the_extent_fuse_at_the_papers_threshold():
    """Three outlines of one finding, pairwise IoU 0.2-0.3: one box at the default (the paper's 0.1);
    a threshold of 0.5 would keep three near-duplicates of one cardiomegaly."""
    outlines = [(0.2, 0.2, 0.5, 0.5), (0.3, 0.3, 0.6, 0.6), (0.1, 0.3, 0.4, 0.6)]
    boxes = pl.DataFrame(
        [("img", f"R{i}", i, "Cardiomegaly", *box, 1000, 800) for i, box in enumerate(outlines)],
        schema=["image_id", "rad_id", "row", "class_name", "x1", "y1", "x2", "y2", "width", "height"],
        orient="row",
    )
    options = ReaderOptions()

    def fuse(iou_thr):
        return vindr_cxr.fuse_radiologists(boxes, iou_thr, options.wbf_skip_box_thr, options.wbf_conf_type)

    fused = fuse(options.wbf_iou_thr)
    assert fused.height == 1 and fused["annotators"].to_list() == [3]
    assert np.allclose(fused.select("x1", "y1", "x2", "y2").row(0), np.mean(outlines, axis=0))
    assert fuse(0.5).height == 3


def test_rereading_reuses_the_pngs(clean_root, clean, storage):
    assert clean.facts["dicoms_converted"] + clean.facts["pngs_reused"] == 72
    again = vindr_cxr.read(clean_root, ReaderOptions(storage_root=storage))
    assert (again.facts["dicoms_converted"], again.facts["pngs_reused"]) == (0, 72)
    assert again.images.equals(clean.images) and again.boxes.equals(clean.boxes)


def test_clean_tables_pass_the_source_checks(clean):
    assert clean.quarantine.is_empty()
    assert checks.accounting_problems(clean.accounting, clean.quarantine) == []
    assert checks.box_problems(clean.boxes) == []
    assert clean.boxes["box_id"].is_unique().all()


def test_dirty_rows_are_quarantined_with_their_reasons(dirty):
    found = {
        (file, row): reason
        for file, row, reason in dirty.quarantine.select("file", "row", "reason").iter_rows()
    }
    assert found == vindr.DIRT[VINDR_CXR.key]
    assert set(dirty.quarantine["kind"]) == {"invalid"}
    assert checks.accounting_problems(dirty.accounting, dirty.quarantine) == []
    assert checks.box_problems(dirty.boxes) == []
    assert dirty.quarantine.filter(pl.col("row") == 7)["detail"].to_list() == ["the same annotation as row 6"]
    assert dirty.images.height == 70  # the two test images without a usable DICOM are gone
    image_0 = dirty.boxes.filter(pl.col("image_id") == vindr.image_id_for(SEED, "train", 0))
    assert sorted(image_0["label"]) == ["Cardiomegaly", "Pleural effusion"]  # rows 1 and 6 survive
    assert set(image_0["annotators"]) == {1}


def test_writing_twice_gives_identical_bytes(clean_root, tmp_path):
    vindr.write(tmp_path, SEED, Variant.CLEAN)
    assert folder_digests(tmp_path / VINDR_CXR.folder) == folder_digests(clean_root / VINDR_CXR.folder)


def test_conversion_is_byte_identical_across_storage_roots(clean_root, clean, storage, tmp_path):
    vindr_cxr.read(clean_root, ReaderOptions(storage_root=tmp_path))
    for path in clean.images["path"][:10]:
        relative = DERIVED_IMAGE_ROOTS["vindr_cxr_png"] / path
        assert (tmp_path / relative).read_bytes() == (storage / relative).read_bytes()


def test_missing_folder_or_file_or_storage_root(tmp_path, clean_root):
    with pytest.raises(DatasetUnavailable, match="vindr-cxr"):
        vindr_cxr.read(tmp_path, ReaderOptions(storage_root=tmp_path))
    (tmp_path / VINDR_CXR.folder).mkdir()
    with pytest.raises(DatasetUnavailable, match="annotations_train.csv"):
        vindr_cxr.read(tmp_path, ReaderOptions(storage_root=tmp_path))
    with pytest.raises(ValueError, match="storage_root"):
        vindr_cxr.read(clean_root, ReaderOptions())


def test_write_scale_writes_paper_proportions_without_pixels(tmp_path):
    counts = vindr.write_scale(tmp_path, SEED, studies=22_784)  # a tenth of MIMIC-CXR
    assert counts[VINDR_CXR.key]["train_images"] == 1_500 and counts[VINDR_CXR.key]["test_images"] == 300
    train = pl.read_csv(tmp_path / VINDR_CXR.folder / vindr_cxr.TRAIN_CSV)
    assert train.columns == list(vindr.COLUMNS)
    assert (
        train["image_id"].n_unique() == 1_500
        and train.height == counts[VINDR_CXR.key]["train_annotation_rows"]
    )
    assert (
        train.filter(pl.col("class_name") == "No finding")["x_min"].null_count()
        == train.filter(pl.col("class_name") == "No finding").height
    )
    assert "rad_ID" in pl.read_csv(tmp_path / VINDR_CXR.folder / vindr_cxr.TEST_CSV).columns
    assert train.group_by("image_id").agg(pl.col("rad_id").n_unique())["rad_id"].eq(3).all()
    labels = pl.read_csv(tmp_path / VINDR_CXR.folder / "annotations" / "image_labels_train.csv")
    assert labels.height == 4_500
    assert not list((tmp_path / VINDR_CXR.folder).rglob("*.dicom"))
