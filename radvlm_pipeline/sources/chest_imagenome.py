"""Chest ImaGenome 1.0.0 (silver dataset): anatomical region boxes on frontal MIMIC-CXR images.

- Rows come from ``silver_dataset/splits/{train,valid,test}.csv`` and keep Chest ImaGenome's own split
  (valid -> "validate"), never MIMIC-CXR's: the paper's code intersected this test set with MIMIC-CXR's
  train split.
- Images are MIMIC-CXR's: path, size and view come from the mimic_cxr images table (so an image the
  MIMIC-CXR reader quarantined, or a non-frontal one, is not used here either); sex from the scene
  graph's ``gender``.
- Boxes: ``objects[]`` of ``silver_dataset/scene_graph/{dicom_id}_SceneGraph.json``, ``original_x1``..
  ``original_y2`` in pixels of the original image, normalised by MIMIC-CXR's Columns/Rows and clipped.
  The n-th object of a scene graph is row n of that file in the accounting.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from radvlm_pipeline.boxes import normalise_pixel_boxes
from radvlm_pipeline.datasets import CHEST_IMAGENOME, MIMIC_CXR
from radvlm_pipeline.ledger import INVALID, ROW, Ledger
from radvlm_pipeline.sources.base import (
    ReaderOptions,
    SourceTables,
    Upstream,
    read_csv_records,
    require_columns,
    require_file,
    require_folder,
)
from radvlm_pipeline.sources.mimic_images import (
    annotated_images,
    annotation_boxes,
    frontal_only,
    join_mimic_images,
    not_in_mimic_images,
)
from radvlm_pipeline.sources.screening import (
    FILE,
    Rule,
    declare,
    duplicates,
    invalid_boxes,
    keep,
    missing_values,
    screen,
)

SPLIT_FILES = {"train": "train", "valid": "validate", "test": "test"}  # file stem -> canonical split
SPLIT_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition")
SCENE_GRAPHS = "silver_dataset/scene_graph"
CORNERS = ("original_x1", "original_y1", "original_x2", "original_y2")


DATASET = CHEST_IMAGENOME
UPSTREAM = (MIMIC_CXR.key,)


def read(data_root: Path, options: ReaderOptions, upstream: Upstream) -> SourceTables:
    root = require_folder(CHEST_IMAGENOME, data_root)
    ledger = Ledger(CHEST_IMAGENOME.key)
    rows = pl.concat([_split_rows(root, stem, split) for stem, split in SPLIT_FILES.items()])
    declare(ledger, rows)
    rows = screen(ledger, rows, [missing_values(["dicom_id"])])
    rows = screen(ledger, rows, [duplicates(["dicom_id"])])
    rows = join_mimic_images(rows, upstream[MIMIC_CXR.key])
    rows = screen(ledger, rows, [*frontal_only(), not_in_mimic_images()])

    outcomes, boxes = _scene_graphs(root, rows)
    rows = pl.concat([rows, outcomes], how="horizontal")
    rows = screen(
        ledger,
        rows,
        [
            Rule(
                INVALID,
                pl.col("graph_problem"),
                pl.col("graph_problem").is_not_null(),
                pl.col("graph_detail"),
            )
        ],
    )
    keep(ledger, rows)

    declare(ledger, boxes)
    boxes = normalise_pixel_boxes(boxes)
    boxes = screen(ledger, boxes, [missing_values(["bbox_name"]), invalid_boxes()])
    boxes = screen(ledger, boxes, [duplicates(["dicom_id", "bbox_name"])])
    keep(ledger, boxes)

    quarantine, accounting = ledger.finish()
    sex = pl.when(pl.col("gender").is_in(["M", "F"])).then(pl.col("gender")).otherwise(pl.col("mimic_sex"))
    return SourceTables(
        images=annotated_images(rows.with_columns(mimic_sex=sex), CHEST_IMAGENOME.key, pl.col("split")),
        boxes=annotation_boxes(
            boxes, CHEST_IMAGENOME.key, "region", pl.col("bbox_name"), pl.lit(None, dtype=pl.String)
        ),
        quarantine=quarantine,
        accounting=accounting,
        facts={
            "release": CHEST_IMAGENOME.release,
            "split": "Chest ImaGenome's own (silver_dataset/splits), not MIMIC-CXR's",
            "regions": boxes["bbox_name"].n_unique(),
            "boxes_clipped": int(boxes["clipped"].sum()),
            "images_split_differently_from_mimic_cxr": rows.filter(
                pl.col("split") != pl.col("mimic_split")
            ).height,
        },
    )


def _split_rows(root: Path, stem: str, split: str) -> pl.DataFrame:
    relative = f"silver_dataset/splits/{stem}.csv"
    frame = read_csv_records(require_file(CHEST_IMAGENOME, root, relative), CHEST_IMAGENOME)
    require_columns(frame, SPLIT_COLUMNS, CHEST_IMAGENOME, relative)
    return frame.select(pl.lit(relative).alias(FILE), ROW, *SPLIT_COLUMNS, pl.lit(split).alias("split"))


def scene_graph_file(dicom_id: str) -> str:
    return f"{SCENE_GRAPHS}/{dicom_id}_SceneGraph.json"


def _load_scene_graph(root: Path, dicom_id: str) -> tuple[list | None, str | None, str | None, str | None]:
    """(objects, gender, problem, detail) of one image's scene graph."""
    relative = scene_graph_file(dicom_id)
    path = root / relative
    if not path.is_file():
        return None, None, "missing_scene_graph", f"scene graph {relative} does not exist"
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, None, "malformed_json", f"scene graph {relative} is not valid JSON: {exc}"
    objects = graph.get("objects") if isinstance(graph, dict) else None
    if not isinstance(objects, list):
        return None, None, "malformed_json", f"scene graph {relative} has no objects list"
    gender = graph.get("gender")
    return objects, gender if isinstance(gender, str) else None, None, None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


# Scene graphs parsed before their objects become columns: at the real size (242,072 graphs, ~7M region
# objects) holding every parsed object as Python dicts would take ~10 GiB.
SCENE_GRAPH_CHUNK = 5_000
OBJECT_SCHEMA = {
    FILE: pl.Categorical,  # the file of each of ~29 objects: a code, not ~90 bytes of path per row
    ROW: pl.Int64,
    "dicom_id": pl.String,
    "bbox_name": pl.String,
    "px_x1": pl.Float64,
    "px_y1": pl.Float64,
    "px_x2": pl.Float64,
    "px_y2": pl.Float64,
    "width": pl.Int32,
    "height": pl.Int32,
}
OUTCOME_SCHEMA = {"gender": pl.String, "graph_problem": pl.String, "graph_detail": pl.String}


def _scene_graphs(root: Path, images: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(gender, graph_problem and graph_detail of each image, in order; one row per scene-graph object of
    the images whose graph loaded, with the MIMIC-CXR image size), a chunk of graphs at a time."""
    outcomes, chunks = [], []
    todo = images.select("dicom_id", "mimic_width", "mimic_height").rows()
    for start in range(0, len(todo), SCENE_GRAPH_CHUNK):
        records = []
        for dicom_id, width, height in todo[start : start + SCENE_GRAPH_CHUNK]:
            objects, *outcome = _load_scene_graph(root, dicom_id)
            outcomes.append(outcome)
            if objects is not None:
                records += _object_records(dicom_id, objects, width, height)
        chunks.append(pl.DataFrame(records, orient="row", schema=OBJECT_SCHEMA))
    boxes = pl.concat(chunks) if chunks else pl.DataFrame(schema=OBJECT_SCHEMA)
    return pl.DataFrame(outcomes, orient="row", schema=OUTCOME_SCHEMA), boxes


def _object_records(dicom_id: str, objects: list, width: int, height: int) -> list[tuple]:
    """One row per scene-graph object of an image; the n-th object is row n of its file."""
    records = []
    for number, obj in enumerate(objects, start=1):
        obj = obj if isinstance(obj, dict) else {}
        name = obj.get("bbox_name")
        records.append(
            (
                scene_graph_file(dicom_id),
                number,
                dicom_id,
                name if isinstance(name, str) else None,
                *(_number(obj.get(corner)) for corner in CORNERS),
                width,
                height,
            )
        )
    return records
