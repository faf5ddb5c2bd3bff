"""MIMIC-CXR-JPG 2.0.0 (JPEG images, metadata, official split, CheXpert labels) with the free-text reports of
MIMIC-CXR 2.0.0, read into the canonical tables.

The rules, and where they come from:
- Frontal views only (ViewPosition PA or AP, the paper); other views are quarantined as ``filtered``.
- Images join the split file on (dicom_id, subject_id, study_id); labels and reports belong to a study
  and join on (subject_id, study_id). A label or report row is kept when its study has a kept image,
  and takes that image's split (MIMIC-CXR splits by patient).
- Report text = findings, else impression, else the last paragraph, with the sections found as the
  MIT-LCP ``section_parser`` finds them (the rule the paper's code used through its sectioned CSV); the
  parser's hand-made overrides for a few dozen malformed real reports are not applied.
- width/height = metadata Columns/Rows, checked against the JPEG unless only existence is checked.
- MIMIC-CXR carries no patient sex (it lives in MIMIC-IV): ``sex`` is null.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from radvlm_pipeline.datasets import MIMIC_CXR
from radvlm_pipeline.images import check_images
from radvlm_pipeline.labels import parse_label_columns
from radvlm_pipeline.ledger import FILTERED, INVALID, ROW, Ledger
from radvlm_pipeline.schema import (
    CHEXPERT_LABELS,
    IMAGES_SCHEMA,
    LABELS_SCHEMA,
    REPORTS_SCHEMA,
    SPLITS,
    VIEWS_FRONTAL,
    conform,
)
from radvlm_pipeline.sources.base import (
    NO_UPSTREAM,
    ReaderOptions,
    SourceTables,
    Upstream,
    read_csv_records,
    require_columns,
    require_file,
    require_folder,
)
from radvlm_pipeline.sources.mimic_images import frontal_only
from radvlm_pipeline.sources.mimic_reports import parse_report_file
from radvlm_pipeline.sources.screening import (
    FILE,
    Rule,
    blank,
    declare,
    duplicates,
    keep,
    missing_values,
    screen,
)

METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"


DATASET = MIMIC_CXR
UPSTREAM: tuple[str, ...] = ()


def read(data_root: Path, options: ReaderOptions, upstream: Upstream = NO_UPSTREAM) -> SourceTables:
    root = require_folder(MIMIC_CXR, data_root)
    ledger = Ledger(MIMIC_CXR.key)
    metadata = _records(
        root, METADATA, ("dicom_id", "subject_id", "study_id", "ViewPosition", "Rows", "Columns")
    )
    splits = _records(root, SPLIT, ("dicom_id", "study_id", "subject_id", "split"))
    chexpert = _records(root, CHEXPERT, ("subject_id", "study_id", *CHEXPERT_LABELS))

    images = _read_images(root, metadata, splits, ledger, options)
    studies = _study_outcomes(metadata, images)
    labels = _read_labels(chexpert, studies, ledger, options)
    reports, without_report = _read_reports(root, studies, ledger)
    quarantine, accounting = ledger.finish()
    return SourceTables(
        images=images,
        reports=reports,
        labels=labels,
        quarantine=quarantine,
        accounting=accounting,
        facts={
            "release": MIMIC_CXR.release,
            "views_kept": list(VIEWS_FRONTAL),
            "uncertain_labels": options.uncertain.value,
            "image_check": options.image_check.value,
            "studies_with_kept_images": images["study_id"].n_unique(),
            "studies_without_report_file": without_report,
            "report_text_rule": "findings, else impression, else last paragraph (MIT-LCP section_parser)",
        },
    )


def _records(root: Path, name: str, required: tuple[str, ...]) -> pl.DataFrame:
    """A release table (``.csv.gz`` as published, or unpacked ``.csv``) with ``file`` and ``row``."""
    path = require_file(MIMIC_CXR, root, f"{name}.gz", name)
    frame = read_csv_records(path, MIMIC_CXR)
    require_columns(frame, required, MIMIC_CXR, path.name)
    return frame.with_columns(pl.lit(path.name).alias(FILE))


# --- Images -------------------------------------------------------------------------------------------
def _read_images(
    root: Path, metadata: pl.DataFrame, splits: pl.DataFrame, ledger: Ledger, options: ReaderOptions
) -> pl.DataFrame:
    declare(ledger, splits)
    split_rows = screen(ledger, splits, [missing_values(["dicom_id"])])
    split_rows = screen(ledger, split_rows, [duplicates(["dicom_id"])])
    split_rows = screen(
        ledger,
        split_rows,
        [
            Rule(
                INVALID,
                "no_metadata_row",
                ~pl.col("dicom_id").is_in(metadata["dicom_id"].drop_nulls().implode()),
                pl.format("dicom_id {} has no row in {}", pl.col("dicom_id"), pl.lit(f"{METADATA}.gz")),
            )
        ],
    )
    keep(ledger, split_rows)

    declare(ledger, metadata)
    rows = screen(ledger, metadata, [missing_values(["dicom_id", "subject_id", "study_id", "ViewPosition"])])
    rows = screen(ledger, rows, [duplicates(["dicom_id"])])
    keys = ["dicom_id", "subject_id", "study_id"]
    rows = rows.join(split_rows.select(*keys, "split"), on=keys, how="left", maintain_order="left")
    rows = screen(
        ledger,
        rows,
        [
            *frontal_only(),
            Rule(
                INVALID,
                "missing_split",
                pl.col("split").is_null(),
                pl.format(
                    "no row for dicom_id {}, subject_id {}, study_id {} in {}",
                    *[pl.col(k) for k in keys],
                    pl.lit(f"{SPLIT}.gz"),
                ),
            ),
            Rule(
                INVALID,
                "unknown_split",
                ~pl.col("split").is_in(SPLITS),
                pl.format("split {} is not one of train, validate, test", pl.col("split")),
            ),
        ],
    )
    rows = rows.with_columns(
        path=pl.format(
            "files/p{}/p{}/s{}/{}.jpg",
            pl.col("subject_id").str.slice(0, 2),
            "subject_id",
            "study_id",
            "dicom_id",
        )
    )
    checked = check_images(
        root, rows["path"].to_list(), options.image_check, options.image_verdicts(MIMIC_CXR.key)
    )
    rows = rows.hstack(checked.rename({"width": "file_width", "height": "file_height"}))
    stated_width = pl.col("Columns").cast(pl.Int32, strict=False)
    stated_height = pl.col("Rows").cast(pl.Int32, strict=False)
    rows = rows.with_columns(
        width=pl.coalesce(stated_width, "file_width"), height=pl.coalesce(stated_height, "file_height")
    )
    rows = screen(
        ledger,
        rows,
        [
            Rule(
                INVALID,
                pl.col("image_problem"),
                pl.col("image_problem").is_not_null(),
                pl.col("image_problem_detail"),
            ),
            Rule(
                INVALID,
                "image_size_mismatch",
                (stated_width != pl.col("file_width")) | (stated_height != pl.col("file_height")),
                pl.format(
                    "metadata says Columns x Rows = {} x {}, the JPEG {} is {} x {}",
                    pl.col("Columns"),
                    pl.col("Rows"),
                    pl.col("path"),
                    pl.col("file_width"),
                    pl.col("file_height"),
                ),
            ),
            Rule(
                INVALID,
                "missing_image_size",
                pl.col("width").is_null() | pl.col("height").is_null(),
                pl.format(
                    "Columns/Rows are blank and the JPEG {} was not opened to measure it", pl.col("path")
                ),
            ),
        ],
    )
    keep(ledger, rows)
    return conform(
        rows.with_columns(
            source=pl.lit(MIMIC_CXR.key),
            dataset=pl.lit(MIMIC_CXR.key),
            image_id=pl.col("dicom_id"),
            original_path=pl.col("path"),
            view=pl.col("ViewPosition"),
            sex=pl.lit(None, dtype=pl.String),
        ),
        IMAGES_SCHEMA,
    )


# --- Studies: labels and reports ----------------------------------------------------------------------
def _study_outcomes(metadata: pl.DataFrame, images: pl.DataFrame) -> pl.DataFrame:
    """Per (subject_id, study_id) seen in the metadata: whether any view is frontal, and the split of its
    kept images (null when none was kept)."""
    seen = (
        metadata.filter(~blank("subject_id") & ~blank("study_id"))
        .group_by("subject_id", "study_id", maintain_order=True)
        .agg(any_frontal=pl.col("ViewPosition").is_in(VIEWS_FRONTAL).any())
    )
    kept = images.group_by("subject_id", "study_id", maintain_order=True).agg(pl.col("split").first())
    return seen.join(kept, on=["subject_id", "study_id"], how="left", maintain_order="left")


def _study_rules(label: str) -> list[Rule]:
    """Why a study-level row (labels, report) has no image to go with."""
    study = pl.format("study {} of subject {}", pl.col("study_id"), pl.col("subject_id"))
    no_image = pl.col("split").is_null()
    return [
        Rule(
            INVALID,
            "unknown_study",
            no_image & pl.col("any_frontal").is_null(),
            pl.format(
                "{} has no image in {}, so this {} has no image to go with",
                study,
                pl.lit(f"{METADATA}.gz"),
                pl.lit(label),
            ),
        ),
        Rule(
            FILTERED,
            "no_frontal_image",
            no_image & ~pl.col("any_frontal"),
            pl.format("{} has no frontal (PA/AP) image; the paper keeps frontal views only", study),
        ),
        Rule(
            INVALID,
            "no_usable_image",
            no_image,
            pl.format(
                "none of the frontal images of {} passed the checks (their metadata rows are in quarantine)",
                study,
            ),
        ),
    ]


def _read_labels(
    chexpert: pl.DataFrame, studies: pl.DataFrame, ledger: Ledger, options: ReaderOptions
) -> pl.DataFrame:
    declare(ledger, chexpert)
    rows = screen(ledger, chexpert, [missing_values(["subject_id", "study_id"])])
    rows = screen(ledger, rows, [duplicates(["subject_id", "study_id"])])
    parsed, unknown = parse_label_columns(rows, options.uncertain)
    for file, row, reason, detail in (
        unknown.join(rows.select(ROW, FILE), on=ROW).select(FILE, ROW, "reason", "detail").iter_rows()
    ):
        ledger.reject(file, row, INVALID, reason, detail)
    rows = parsed.join(studies, on=["subject_id", "study_id"], how="left", maintain_order="left")
    rows = screen(ledger, rows, _study_rules("label row"))
    keep(ledger, rows)
    return conform(
        rows.with_columns(source=pl.lit(MIMIC_CXR.key), image_id=pl.lit(None, dtype=pl.String)), LABELS_SCHEMA
    )


def _read_reports(root: Path, studies: pl.DataFrame, ledger: Ledger) -> tuple[pl.DataFrame, int]:
    """One report file per study of the metadata (``files/p10/p10000032/s50414267.txt``); returns the
    reports and how many studies with kept images have no report file."""
    candidates = studies.with_columns(
        pl.format(
            "files/p{}/p{}/s{}.txt", pl.col("subject_id").str.slice(0, 2), "subject_id", "study_id"
        ).alias(FILE),
        pl.lit(1, dtype=pl.Int64).alias(ROW),
    ).sort(FILE)
    present = candidates.filter(
        pl.Series([os.path.isfile(os.path.join(root, f)) for f in candidates[FILE]], dtype=pl.Boolean)
    )
    without_report = (
        candidates.filter(pl.col("split").is_not_null()).height
        - present.filter(pl.col("split").is_not_null()).height
    )
    declare(ledger, present)
    rows = screen(ledger, present, _study_rules("report"))
    sections = [parse_report_file(root / file) for file in rows[FILE].to_list()]
    rows = pl.concat(
        [
            rows,
            pl.DataFrame(
                sections,
                orient="row",
                schema={
                    "findings": pl.String,
                    "impression": pl.String,
                    "report": pl.String,
                    "problem": pl.String,
                },
            ),
        ],
        how="horizontal",
    )
    rows = screen(
        ledger,
        rows,
        [
            Rule(INVALID, "unreadable_report", pl.col("problem").is_not_null(), pl.col("problem")),
            Rule(
                INVALID,
                "empty_report",
                pl.col("report").is_null(),
                pl.lit("the report has no findings, impression or final paragraph with text"),
            ),
        ],
    )
    keep(ledger, rows)
    return conform(
        rows.with_columns(
            source=pl.lit(MIMIC_CXR.key), image_id=pl.lit(None, dtype=pl.String), path=pl.col(FILE)
        ),
        REPORTS_SCHEMA,
    ), without_report
