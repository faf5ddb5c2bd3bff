"""The Chest ImaGenome reader on the synthetic sample: its own split, region boxes, faults, accounting."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from radvlm_pipeline.sample_data import mimic
from radvlm_pipeline.sample_data import mimic_cxr as writer
from radvlm_pipeline.sample_data.common import REGIONS, Variant
from radvlm_pipeline.sources import checks, chest_imagenome, mimic_cxr
from radvlm_pipeline.sources.base import DatasetUnavailable, ReaderOptions

SEED = 0


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[Variant, Path]:
    out = {}
    for variant in Variant:
        out[variant] = tmp_path_factory.mktemp(f"imagenome-{variant.value}")
        mimic.write(out[variant], SEED, variant)
    return out


@pytest.fixture(scope="module")
def mimic_images(roots) -> dict[Variant, pl.DataFrame]:
    return {variant: mimic_cxr.read(root, ReaderOptions()).images for variant, root in roots.items()}


@pytest.fixture(scope="module")
def clean(roots, mimic_images):
    return chest_imagenome.read(
        roots[Variant.CLEAN], ReaderOptions(), {"mimic_cxr": mimic_images[Variant.CLEAN]}
    )


@pytest.fixture(scope="module")
def dirty(roots, mimic_images):
    return chest_imagenome.read(
        roots[Variant.DIRTY], ReaderOptions(), {"mimic_cxr": mimic_images[Variant.DIRTY]}
    )


def split_file_rows(root: Path) -> dict[str, list[dict]]:
    folder = root / "chest-imagenome" / "silver_dataset" / "splits"
    return {
        stem: list(csv.DictReader((folder / f"{stem}.csv").open())) for stem in ("train", "valid", "test")
    }


def test_images_keep_chest_imagenomes_own_split(clean, roots, mimic_images):
    files = split_file_rows(roots[Variant.CLEAN])
    canonical = {"train": "train", "valid": "validate", "test": "test"}
    expected = {row["dicom_id"]: canonical[stem] for stem, rows in files.items() for row in rows}
    assert dict(clean.images.select("image_id", "split").iter_rows()) == expected
    assert all(len(rows) for rows in files.values())
    mimic_split = dict(mimic_images[Variant.CLEAN].select("image_id", "split").iter_rows())
    assert any(split != mimic_split[image] for image, split in expected.items())  # not MIMIC-CXR's split
    assert clean.facts["images_split_differently_from_mimic_cxr"] > 0
    assert checks.split_leak_problems(clean.images) == []


def test_images_are_mimic_cxr_images(clean, mimic_images):
    mimic_rows = mimic_images[Variant.CLEAN].select("image_id", "path", "width", "height", "view")
    joined = clean.images.join(mimic_rows, on="image_id", suffix="_mimic")
    assert joined.height == clean.images.height
    assert (joined["path"] == joined["path_mimic"]).all() and (joined["width"] == joined["width_mimic"]).all()
    assert set(clean.images["dataset"]) == {"mimic_cxr"} and set(clean.images["source"]) == {
        "chest_imagenome"
    }
    assert set(clean.images["sex"]) == {"M", "F"}  # from the scene graph's gender


def test_region_boxes_are_normalised_by_the_mimic_image_size(clean, roots, mimic_images):
    image = clean.images.row(0, named=True)
    graph_path = (
        roots[Variant.CLEAN] / "chest-imagenome" / chest_imagenome.scene_graph_file(image["image_id"])
    )
    graph = json.loads(graph_path.read_text())
    lung = next(o for o in graph["objects"] if o["bbox_name"] == "right lung")
    box = clean.boxes.filter(
        (pl.col("image_id") == image["image_id"]) & (pl.col("label") == "right lung")
    ).row(0, named=True)
    width, height = image["width"], image["height"]
    assert (box["x1"], box["y1"], box["x2"], box["y2"]) == pytest.approx(
        (
            lung["original_x1"] / width,
            lung["original_y1"] / height,
            lung["original_x2"] / width,
            lung["original_y2"] / height,
        )
    )
    assert (box["px_x1"], box["px_y2"]) == (lung["original_x1"], lung["original_y2"])
    assert box["kind"] == "region" and box["category"] is None
    assert set(clean.boxes["label"]) == set(REGIONS)
    assert checks.box_problems(clean.boxes) == []


def test_overhanging_boxes_are_clipped_and_counted(clean, roots):
    overhanging = 0
    for image_id, height in clean.images.select("image_id", "height").iter_rows():
        graph = json.loads(
            (
                roots[Variant.CLEAN] / "chest-imagenome" / chest_imagenome.scene_graph_file(image_id)
            ).read_text()
        )
        overhanging += sum(o["original_y2"] > height for o in graph["objects"])
    assert overhanging > 0
    assert clean.facts["boxes_clipped"] == overhanging
    boxes = clean.boxes.join(clean.images.select("image_id", "height"), on="image_id")
    assert (boxes.filter(pl.col("px_y2") > pl.col("height"))["y2"] == 1.0).all()


def test_dirty_sample_quarantines_each_fault_where_it_was_put(dirty, roots):
    quarantined = {
        (f, r): reason for f, r, reason in dirty.quarantine.select("file", "row", "reason").iter_rows()
    }
    faults = mimic.faults(SEED)["chest_imagenome"]
    assert quarantined == {(fault.file, fault.row): fault.reason for fault in faults.values()}
    outsider = split_file_rows(roots[Variant.DIRTY])["train"][faults["not_in_mimic_images"].row - 1][
        "dicom_id"
    ]
    detail = dirty.quarantine.filter(pl.col("reason") == "not_in_mimic_images").item(0, "detail")
    assert detail.startswith(f"dicom_id {outsider} is not among MIMIC-CXR's kept frontal images")


def test_dirt_removes_only_the_faulty_rows(clean, dirty):
    assert dirty.images.equals(clean.images)
    broken = {(fault.file, fault.row) for fault in mimic.faults(SEED)["chest_imagenome"].values()}
    box_rows = {
        (f"silver_dataset/scene_graph/{box_id.split(':')[0]}_SceneGraph.json", int(box_id.split(":")[1]))
        for box_id in clean.boxes["box_id"]
    }
    assert dirty.boxes.height == clean.boxes.height - len(broken & box_rows) == clean.boxes.height - 2


@pytest.mark.parametrize("which", ["clean", "dirty"])
def test_every_row_is_accounted_for(request, which):
    tables = request.getfixturevalue(which)
    assert checks.accounting_problems(tables.accounting, tables.quarantine) == []
    scene_graph_rows = tables.accounting.filter(pl.col("file").str.starts_with("silver_dataset/scene_graph/"))
    assert scene_graph_rows["rows_out"].sum() == tables.boxes.height


def test_a_lateral_row_is_filtered(tmp_path, roots, mimic_images, clean):
    shutil.copytree(roots[Variant.CLEAN] / "chest-imagenome", tmp_path / "chest-imagenome")
    lateral = next(s for s in writer.plan(SEED) if any(i.view == "LATERAL" for i in s.images))
    image = next(i for i in lateral.images if i.view == "LATERAL")
    test_csv = tmp_path / "chest-imagenome" / "silver_dataset" / "splits" / "test.csv"
    rows = test_csv.read_text().splitlines()
    rows.append(f"{len(rows) - 1},{lateral.subject_id},{lateral.study_id},{image.dicom_id},x.dcm,LATERAL")
    test_csv.write_text("\n".join(rows) + "\n")
    tables = chest_imagenome.read(tmp_path, ReaderOptions(), {"mimic_cxr": mimic_images[Variant.CLEAN]})
    assert tables.quarantine.select("file", "row", "kind", "reason").rows() == [
        ("silver_dataset/splits/test.csv", len(rows) - 1, "filtered", "lateral_view")
    ]
    assert tables.images.equals(clean.images)


def test_missing_folder_or_split_file_is_reported_by_name(tmp_path, roots, mimic_images):
    with pytest.raises(DatasetUnavailable, match="chest-imagenome"):
        chest_imagenome.read(tmp_path, ReaderOptions(), {"mimic_cxr": mimic_images[Variant.CLEAN]})
    shutil.copytree(
        roots[Variant.CLEAN] / "chest-imagenome" / "silver_dataset" / "splits",
        tmp_path / "chest-imagenome" / "silver_dataset" / "splits",
    )
    (tmp_path / "chest-imagenome" / "silver_dataset" / "splits" / "valid.csv").unlink()
    with pytest.raises(DatasetUnavailable, match="valid.csv"):
        chest_imagenome.read(tmp_path, ReaderOptions(), {"mimic_cxr": mimic_images[Variant.CLEAN]})
