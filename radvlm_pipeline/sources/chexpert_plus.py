"""CheXpert-Plus (df_chexpert_plus_240401, Stanford AIMI) -> frontal images, their reports and CheXbert labels.

Layout read, under the ``chexpert-plus/`` data folder:

- ``df_chexpert_plus_240401.csv`` (required): one row per image of CheXpert's train and valid sets, in 27
  columns: path_to_image (``train/patient42142/study5/view1_frontal.jpg``), path_to_dcm, frontal_lateral
  (Frontal / Lateral), ap_pa, deid_patient_id, patient_report_date_order, report, section_narrative,
  section_clinical_history, section_history, section_comparison, section_technique,
  section_procedure_comments, section_findings, section_impression, section_end_of_impression,
  section_summary, section_accession_number, age, sex, race, ethnicity, interpreter_needed, insurance_type,
  recent_bmi, deceased, split (train / valid). Report fields span several lines, quoted.
- ``PNG/``: the PNG release of the images. Files keep path_to_image's name with ``.png`` for ``.jpg``
  (``PNG/train/patient42142/study5/view1_frontal.png``), as the RadVLM code reads them.
- ``chexbert_labels/report_fixed.json`` (optional): JSON lines, one per image: path_to_image and the 14
  labels as 1.0 / 0.0 / -1.0 or null (CheXbert on the whole report). Without it there are no label rows
  and ``facts["labels_file"]`` says so.

The report text is the findings section, else the impression, as for MIMIC-CXR. A row with neither is
quarantined ("empty_report"). Reports and labels are per image (image_id set): the CSV has a row per
image, and the images of a study repeat its report. Ids are CheXpert's (image_id
``train/patient00001/study1/view1_frontal``, subject_id ``patient00001``, study_id ``patient00001/study1``):
CheXpert-Plus is CheXpert's train and valid images, so patients and splits agree with CheXpert's tables.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl

from radvlm_pipeline.datasets import CHEXPERT_PLUS
from radvlm_pipeline.labels import parse_label_columns
from radvlm_pipeline.ledger import FILTERED, INVALID, Ledger
from radvlm_pipeline.schema import CHEXPERT_LABELS, IMAGES_SCHEMA, LABELS_SCHEMA, REPORTS_SCHEMA, conform, empty
from radvlm_pipeline.sources.base import ROW, ReaderOptions, SourceTables, read_csv_records, require_file, require_folder
from radvlm_pipeline.sources.chexpert import (
    REJECTION_COLUMNS,
    SPLIT_NAMES,
    blank_to_null,
    keep_unrejected,
    parse_image_paths,
    path_rejections,
    rejected,
    require_columns,
    sex_expression,
    value_rejections,
    with_image_sizes,
)

REPORTS_CSV = "df_chexpert_plus_240401.csv"
LABELS_FILE = "chexbert_labels/report_fixed.json"
IMAGE_FOLDER = "PNG"
RELEASE_SPLITS = ("train", "valid")
REQUIRED_COLUMNS = ["path_to_image", "frontal_lateral", "ap_pa", "section_findings", "section_impression", "sex", "split"]


def read(data_root: Path, options: ReaderOptions) -> SourceTables:
    root = require_folder(CHEXPERT_PLUS, data_root)
    csv_path = require_file(CHEXPERT_PLUS, root, REPORTS_CSV)
    ledger = Ledger(CHEXPERT_PLUS.key)
    images, rejected_rows = _read_images(root, csv_path, ledger, options)
    reports = images.select(
        "source", "study_id", "subject_id", "image_id", "split", "report", "findings", "impression",
        pl.lit(REPORTS_CSV).alias("path"),
    )
    facts = {
        "reports_from_findings": images.filter(pl.col("findings").is_not_null()).height,
        "reports_from_impression": images.filter(pl.col("findings").is_null()).height,
        "uncertain_labels": options.uncertain.value,
        "image_check": options.image_check.value,
    }
    if (root / LABELS_FILE).is_file():
        labels = _read_labels(root / LABELS_FILE, images, rejected_rows, ledger, options)
        facts["labels_file"] = LABELS_FILE
        facts["images_without_labels"] = images.join(labels, on="image_id", how="anti").height
    else:
        labels = empty(LABELS_SCHEMA)
        facts["labels_file"] = f"absent: no {LABELS_FILE} under {root} (chexbert_labels of the release); no label rows"
    quarantine_table, accounting = ledger.finish()
    return SourceTables(
        images=conform(images, IMAGES_SCHEMA),
        reports=conform(reports, REPORTS_SCHEMA),
        labels=labels,
        quarantine=quarantine_table,
        accounting=accounting,
        facts=facts,
    )


def _read_images(
    root: Path, csv_path: Path, ledger: Ledger, options: ReaderOptions
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The kept frontal rows (images-table columns plus report, findings, impression, path_to_image) and
    every CSV row's rejection, keyed by path_to_image, for the label lines to follow."""
    raw = read_csv_records(csv_path, CHEXPERT_PLUS)
    require_columns(raw, REQUIRED_COLUMNS, CHEXPERT_PLUS, REPORTS_CSV)
    ledger.expect(REPORTS_CSV, raw[ROW])
    frame = parse_image_paths(raw, "path_to_image", "", RELEASE_SPLITS).with_columns(
        blank_to_null("section_findings").alias("findings"),
        blank_to_null("section_impression").alias("impression"),
    )
    rejections = [
        *path_rejections(frame, "path_to_image", "{train,valid}/"),
        *value_rejections(frame, "split", RELEASE_SPLITS),
        *value_rejections(frame, "frontal_lateral", ("Frontal", "Lateral")),
        rejected(frame, blank_to_null("frontal_lateral") == "Lateral", FILTERED, "lateral_view",
                 pl.format("lateral view {}; the paper keeps frontal (PA/AP) views only", pl.col("path_to_image"))),
        rejected(frame, pl.col("findings").is_null() & pl.col("impression").is_null(), INVALID, "empty_report",
                 pl.format("report of {} has neither a findings nor an impression section", pl.col("path_to_image"))),
    ]
    kept, rejected_rows = keep_unrejected(frame, rejections, ledger, REPORTS_CSV)
    kept = kept.with_columns(
        pl.format("{}/{}.png", pl.lit(IMAGE_FOLDER), pl.col("path_to_image").str.strip_suffix(".jpg")).alias("path")
    )
    kept, missing_images = with_image_sizes(kept, root, options.image_check, ledger, REPORTS_CSV)
    ledger.keep(REPORTS_CSV, kept[ROW])
    images = kept.with_columns(
        pl.lit(CHEXPERT_PLUS.key).alias("source"),
        pl.lit(CHEXPERT_PLUS.key).alias("dataset"),
        blank_to_null("split").replace_strict(SPLIT_NAMES).alias("split"),
        pl.col("path").alias("original_path"),
        blank_to_null("ap_pa").alias("view"),
        sex_expression("sex"),
        pl.coalesce("findings", "impression").alias("report"),
    )
    first_rows = frame.filter(pl.col("path_to_image").is_first_distinct()).select("path_to_image", ROW)
    rejections_by_path = first_rows.join(pl.concat([rejected_rows, missing_images]), on=ROW)
    return images, rejections_by_path


def _read_labels(
    path: Path, images: pl.DataFrame, rejected_rows: pl.DataFrame, ledger: Ledger, options: ReaderOptions
) -> pl.DataFrame:
    """One label row per kept image that has a valid label line; every line kept or quarantined."""
    lines, malformed = _label_lines(path)
    lines = parse_image_paths(lines, "path_to_image", "", RELEASE_SPLITS)
    ledger.expect(LABELS_FILE, range(1, len(lines) + len(malformed) + 1))
    parsed, unknown_values = parse_label_columns(lines, options.uncertain)
    known_paths = images.select("path_to_image").vstack(rejected_rows.select("path_to_image"))
    with_image_rejection = lines.join(
        rejected_rows.rename({ROW: "image_row", "kind": "image_kind", "reason": "image_reason", "detail": "image_detail"}),
        on="path_to_image", how="left",
    )
    rejections = [
        malformed,
        *path_rejections(lines, "path_to_image", "{train,valid}/"),
        unknown_values.select(ROW, pl.lit(INVALID).alias("kind"), "reason", "detail"),
        rejected(lines, ~pl.col("path_to_image").is_in(known_paths["path_to_image"].implode()), INVALID, "unknown_image",
                 pl.format("label line for {}, which has no row in {}", pl.col("path_to_image"), pl.lit(REPORTS_CSV))),
        # A line whose image row was quarantined goes with it, for the same reason.
        with_image_rejection.filter(pl.col("image_row").is_not_null()).select(
            ROW, pl.col("image_kind").alias("kind"), pl.col("image_reason").alias("reason"),
            pl.format("label line for {}, whose row {} in {} was quarantined: {}", pl.col("path_to_image"),
                      pl.col("image_row"), pl.lit(REPORTS_CSV), pl.col("image_detail")).alias("detail"),
        ),
    ]
    kept, _ = keep_unrejected(parsed, rejections, ledger, LABELS_FILE)
    ledger.keep(LABELS_FILE, kept[ROW])
    labelled = kept.join(
        images.select("path_to_image", "source", "study_id", "subject_id", "image_id", "split"), on="path_to_image"
    )
    return conform(labelled, LABELS_SCHEMA)


def _label_lines(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the JSON lines that parse, as rows of strings like a CSV's; the ones that do not, as rejections).
    Row n is the n-th non-blank line. A Python loop: one bad line must not sink the file."""
    records, malformed = [], []
    text = path.read_text(encoding="utf-8")
    for row, line in enumerate((line for line in text.splitlines() if line.strip()), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            malformed.append((row, INVALID, "malformed_json", f"line {row} is not valid JSON ({exc.msg}, column {exc.colno})"))
            continue
        if not isinstance(record, dict):
            malformed.append((row, INVALID, "malformed_json", f"line {row} is a JSON {type(record).__name__}, not an object"))
            continue
        path_value = record.get("path_to_image")
        records.append(
            (row, path_value if isinstance(path_value, str) else None, *(_label_text(record.get(name)) for name in CHEXPERT_LABELS))
        )
    lines = pl.DataFrame(
        records, schema={ROW: pl.Int64, "path_to_image": pl.String, **dict.fromkeys(CHEXPERT_LABELS, pl.String)}, orient="row"
    )
    rejections = pl.DataFrame(
        malformed, schema={ROW: pl.Int64, "kind": pl.String, "reason": pl.String, "detail": pl.String}, orient="row"
    )
    return lines, rejections.select(REJECTION_COLUMNS)


def _label_text(value: object) -> str | None:
    """A JSON label value in the CSVs' string convention, so one parser checks both: 1.0 -> "1.0",
    null (or NaN) -> None; anything else keeps its text and is rejected as unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)
