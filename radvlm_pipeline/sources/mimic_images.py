"""MIMIC-CXR's images as the datasets annotating them (Chest ImaGenome, MS-CXR) use them.

Those releases ship no images of their own: path, size, view and split come from the mimic_cxr images
table, so an image the MIMIC-CXR reader quarantined (or a non-frontal one) is not used by them either,
and every source that shows a MIMIC-CXR image names it the same way.
"""

from __future__ import annotations

import polars as pl

from radvlm_pipeline.datasets import MIMIC_CXR
from radvlm_pipeline.ledger import FILTERED, INVALID, ROW
from radvlm_pipeline.schema import BOXES_SCHEMA, IMAGES_SCHEMA, VIEWS_FRONTAL, conform
from radvlm_pipeline.sources.screening import Rule


def frontal_only() -> list[Rule]:
    """Quarantine (as the paper's filter) every ViewPosition but PA and AP: laterals (LATERAL, LL, XTABLE
    LATERAL) as ``lateral_view``, the rest (AP AXIAL, PA LLD, LAO...) as ``non_frontal_view``."""
    view = pl.col("ViewPosition")
    detail = pl.format("ViewPosition {} is not frontal (PA/AP); the paper keeps frontal views only", view)
    return [
        Rule(FILTERED, "lateral_view", view.str.contains("LAT") | (view == "LL"), detail),
        Rule(FILTERED, "non_frontal_view", ~view.is_in(VIEWS_FRONTAL), detail),
    ]


MIMIC_IMAGE_COLUMNS = (
    "image_id",
    "subject_id",
    "study_id",
    "split",
    "path",
    "width",
    "height",
    "view",
    "sex",
)


def join_mimic_images(frame: pl.DataFrame, mimic_images: pl.DataFrame) -> pl.DataFrame:
    """Add the MIMIC-CXR image's columns, prefixed ``mimic_``, by ``dicom_id`` (null where MIMIC-CXR's
    images table lacks it)."""
    lookup = mimic_images.select([pl.col(c).alias(f"mimic_{c}") for c in MIMIC_IMAGE_COLUMNS]).unique(
        "mimic_image_id", keep="first", maintain_order=True
    )
    return frame.join(
        lookup, left_on="dicom_id", right_on="mimic_image_id", how="left", maintain_order="left"
    )


def not_in_mimic_images() -> Rule:
    """For a frame from ``join_mimic_images``: the annotated image is not among MIMIC-CXR's kept images."""
    return Rule(
        INVALID,
        "not_in_mimic_images",
        pl.col("mimic_path").is_null(),
        pl.format(
            "dicom_id {} is not among MIMIC-CXR's kept frontal images (absent from the MIMIC-CXR release, or "
            "quarantined by the mimic_cxr reader: see its quarantine table)",
            pl.col("dicom_id"),
        ),
    )


def annotated_images(rows: pl.DataFrame, source: str, split: pl.Expr) -> pl.DataFrame:
    """The images table of a dataset annotating MIMIC-CXR images: one row per distinct dicom_id of
    ``rows`` (a ``join_mimic_images`` frame), the image living under the MIMIC-CXR root."""
    return conform(
        rows.unique("dicom_id", keep="first", maintain_order=True).with_columns(
            source=pl.lit(source),
            dataset=pl.lit(MIMIC_CXR.key),
            image_id=pl.col("dicom_id"),
            subject_id=pl.col("mimic_subject_id"),
            study_id=pl.col("mimic_study_id"),
            split=split,
            path=pl.col("mimic_path"),
            original_path=pl.col("mimic_path"),
            width=pl.col("mimic_width"),
            height=pl.col("mimic_height"),
            view=pl.col("mimic_view"),
            sex=pl.col("mimic_sex"),
        ),
        IMAGES_SCHEMA,
    )


def annotation_boxes(
    rows: pl.DataFrame, source: str, kind: str, label: pl.Expr, category: pl.Expr
) -> pl.DataFrame:
    """The boxes table from a frame of ``boxes.normalise_pixel_boxes``; ``box_id`` is the dicom_id and the
    row of the box in its file, stable across runs of one release."""
    return conform(
        rows.with_columns(
            source=pl.lit(source),
            image_id=pl.col("dicom_id"),
            box_id=pl.format("{}:{}", pl.col("dicom_id"), pl.col(ROW)),
            kind=pl.lit(kind),
            label=label,
            category=category,
            annotators=pl.lit(1, dtype=pl.Int32),
            score=pl.lit(1.0),
        ),
        BOXES_SCHEMA,
    )
