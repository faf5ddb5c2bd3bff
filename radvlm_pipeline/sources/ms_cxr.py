"""MS-CXR 1.0.0: radiologists' boxes for report phrases on frontal MIMIC-CXR images (phrase grounding).

- ``MS_CXR_Local_Alignment_v1.0.0.csv``: one row per box (x, y, w, h in pixels of the original image);
  a phrase with several boxes has several rows. Each box is a "phrase" box labelled with ``label_text``
  and categorised by ``category_name``.
- Images are MIMIC-CXR's (path, split and view from the mimic_cxr images table): the release has no
  split of its own, so splits follow MIMIC-CXR's, as in the paper.
- ``image_width``/``image_height`` are checked against MIMIC-CXR's Columns/Rows; where they are blank,
  MIMIC-CXR's size is used (counted in the facts).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from radvlm_pipeline.boxes import normalise_pixel_boxes, xywh_to_corners
from radvlm_pipeline.datasets import MIMIC_CXR, MS_CXR
from radvlm_pipeline.ledger import INVALID, Ledger
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

ANNOTATIONS = "MS_CXR_Local_Alignment_v1.0.0.csv"
COLUMNS = (
    "dicom_id",
    "category_name",
    "label_text",
    "path",
    "x",
    "y",
    "w",
    "h",
    "image_width",
    "image_height",
)


DATASET = MS_CXR
UPSTREAM = (MIMIC_CXR.key,)


def read(data_root: Path, options: ReaderOptions, upstream: Upstream) -> SourceTables:
    root = require_folder(MS_CXR, data_root)
    rows = read_csv_records(require_file(MS_CXR, root, ANNOTATIONS), MS_CXR)
    require_columns(rows, COLUMNS, MS_CXR, ANNOTATIONS)
    rows = rows.with_columns(pl.lit(ANNOTATIONS).alias(FILE))
    ledger = Ledger(MS_CXR.key)
    declare(ledger, rows)
    rows = screen(ledger, rows, [missing_values(["dicom_id", "label_text"])])
    rows = screen(ledger, rows, [duplicates(list(COLUMNS))])

    stated_width = pl.col("image_width").cast(pl.Float64, strict=False)
    stated_height = pl.col("image_height").cast(pl.Float64, strict=False)
    rows = join_mimic_images(rows, upstream[MIMIC_CXR.key]).with_columns(
        width=pl.coalesce(stated_width, pl.col("mimic_width").cast(pl.Float64)),
        height=pl.coalesce(stated_height, pl.col("mimic_height").cast(pl.Float64)),
        size_from_mimic=stated_width.is_null() | stated_height.is_null(),
    )
    rows = normalise_pixel_boxes(xywh_to_corners(rows, "x", "y", "w", "h"))
    rows = screen(
        ledger,
        rows,
        [
            not_in_mimic_images(),
            Rule(
                INVALID,
                "image_size_mismatch",
                (stated_width != pl.col("mimic_width")) | (stated_height != pl.col("mimic_height")),
                pl.format(
                    "image_width x image_height = {} x {}, but MIMIC-CXR's image {} is {} x {}",
                    pl.col("image_width"),
                    pl.col("image_height"),
                    pl.col("mimic_path"),
                    pl.col("mimic_width"),
                    pl.col("mimic_height"),
                ),
            ),
            invalid_boxes(),
        ],
    )
    keep(ledger, rows)
    quarantine, accounting = ledger.finish()
    return SourceTables(
        images=annotated_images(rows, MS_CXR.key, pl.col("mimic_split")),
        boxes=annotation_boxes(rows, MS_CXR.key, "phrase", pl.col("label_text"), pl.col("category_name")),
        quarantine=quarantine,
        accounting=accounting,
        facts={
            "release": MS_CXR.release,
            "split": "MIMIC-CXR's (MS-CXR has none of its own)",
            "phrases": rows.select("dicom_id", "label_text").n_unique(),
            "boxes_clipped": int(rows["clipped"].sum()),
            "image_sizes_from_mimic_cxr": int(rows["size_from_mimic"].sum()),
        },
    )
