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
quarantined ("empty_report"). A label line goes where its image goes: the line of a lateral image is
filtered, the line of a quarantined image is quarantined ("image_rejected"). Reports and labels are per image (image_id set): the CSV has a row per
image, and the images of a study repeat its report. Ids are CheXpert's (image_id
``train/patient00001/study1/view1_frontal``, subject_id ``patient00001``, study_id ``patient00001/study1``):
CheXpert-Plus is CheXpert's train and valid images, so patients and splits agree with CheXpert's tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from radvlm_pipeline.datasets import CHEXPERT_PLUS
from radvlm_pipeline.ledger import FILTERED, INVALID, ROW, Ledger
from radvlm_pipeline.schema import (
    CHEXPERT_LABELS,
    IMAGES_SCHEMA,
    LABELS_SCHEMA,
    REPORTS_SCHEMA,
    conform,
    empty,
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
from radvlm_pipeline.sources.chexpert import (
    SPLIT_NAMES,
    parse_image_paths,
    path_rules,
    screen_images,
    screen_labels,
    sex_expression,
    stripped,
    unknown_value,
)
from radvlm_pipeline.sources.screening import FILE, Rule, declare, duplicates, keep, missing_values, screen

REPORTS_CSV = "df_chexpert_plus_240401.csv"
LABELS_FILE = "chexbert_labels/report_fixed.json"
IMAGE_FOLDER = "PNG"
RELEASE_SPLITS = ("train", "valid")
EXPECTED_START = "{train,valid}/"
REQUIRED_COLUMNS = [
    "path_to_image",
    "frontal_lateral",
    "ap_pa",
    "section_findings",
    "section_impression",
    "sex",
    "split",
]


DATASET = CHEXPERT_PLUS
UPSTREAM: tuple[str, ...] = ()


def read(data_root: Path, options: ReaderOptions, upstream: Upstream = NO_UPSTREAM) -> SourceTables:
    root = require_folder(CHEXPERT_PLUS, data_root)
    csv_path = require_file(CHEXPERT_PLUS, root, REPORTS_CSV)
    ledger = Ledger(CHEXPERT_PLUS.key)
    images, csv_rows = _read_images(root, csv_path, ledger, options)
    reports = images.select(
        "source",
        "study_id",
        "subject_id",
        "image_id",
        "split",
        "report",
        "findings",
        "impression",
        pl.lit(REPORTS_CSV).alias("path"),
    )
    facts = {
        "reports_from_findings": images.filter(pl.col("findings").is_not_null()).height,
        "reports_from_impression": images.filter(pl.col("findings").is_null()).height,
        "uncertain_labels": options.uncertain.value,
        "image_check": options.image_check.value,
    }
    if (root / LABELS_FILE).is_file():
        labels = _read_labels(root / LABELS_FILE, images, csv_rows, ledger, options)
        facts["labels_file"] = LABELS_FILE
        facts["images_without_labels"] = images.join(labels, on="image_id", how="anti").height
    else:
        labels = empty(LABELS_SCHEMA)
        facts["labels_file"] = (
            f"absent: no {LABELS_FILE} under {root} (chexbert_labels of the release); no label rows"
        )
    quarantine, accounting = ledger.finish()
    return SourceTables(
        images=conform(images, IMAGES_SCHEMA),
        reports=conform(reports, REPORTS_SCHEMA),
        labels=labels,
        quarantine=quarantine,
        accounting=accounting,
        facts=facts,
    )


def _read_images(
    root: Path, csv_path: Path, ledger: Ledger, options: ReaderOptions
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The kept frontal rows (images-table columns plus report, findings, impression, path_to_image), and
    the first CSV row of each path_to_image (row, frontal_lateral), for the label lines to follow."""
    raw = read_csv_records(csv_path, CHEXPERT_PLUS)
    require_columns(raw, REQUIRED_COLUMNS, CHEXPERT_PLUS, REPORTS_CSV)
    rows = parse_image_paths(
        raw.with_columns(pl.lit(REPORTS_CSV).alias(FILE)), "path_to_image", "", RELEASE_SPLITS
    )
    rows = rows.with_columns(
        stripped("section_findings").alias("findings"), stripped("section_impression").alias("impression")
    )
    declare(ledger, rows)
    first_rows = rows.filter(pl.col("path_to_image").is_first_distinct()).select(
        "path_to_image", ROW, "frontal_lateral"
    )
    rows = screen(
        ledger,
        rows,
        [
            *path_rules("path_to_image", EXPECTED_START),
            missing_values(["split", "frontal_lateral"]),
            unknown_value("split", RELEASE_SPLITS),
            unknown_value("frontal_lateral", ("Frontal", "Lateral")),
            Rule(
                FILTERED,
                "lateral_view",
                stripped("frontal_lateral") == "Lateral",
                pl.format(
                    "lateral view {}; the paper keeps frontal (PA/AP) views only", pl.col("path_to_image")
                ),
            ),
            Rule(
                INVALID,
                "empty_report",
                pl.col("findings").is_null() & pl.col("impression").is_null(),
                pl.format(
                    "report of {} has neither a findings nor an impression section", pl.col("path_to_image")
                ),
            ),
        ],
    )
    rows = screen(ledger, rows, [duplicates(["path_to_image"])])
    png = pl.format("{}/{}.png", pl.lit(IMAGE_FOLDER), pl.col("path_to_image").str.strip_suffix(".jpg"))
    rows = screen_images(
        ledger,
        rows.with_columns(png.alias("path")),
        root,
        options.image_check,
        options.image_verdicts(CHEXPERT_PLUS.key),
    )
    keep(ledger, rows)
    images = rows.with_columns(
        pl.lit(CHEXPERT_PLUS.key).alias("source"),
        pl.lit(CHEXPERT_PLUS.key).alias("dataset"),
        stripped("split").replace_strict(SPLIT_NAMES).alias("split"),
        pl.col("path").alias("original_path"),
        stripped("ap_pa").alias("view"),
        sex_expression("sex"),
        pl.coalesce("findings", "impression").alias("report"),
    )
    return images, first_rows


def _read_labels(
    path: Path, images: pl.DataFrame, csv_rows: pl.DataFrame, ledger: Ledger, options: ReaderOptions
) -> pl.DataFrame:
    """One label row per kept image that has a valid label line; every line kept or quarantined."""
    lines, malformed = _label_lines(path)
    ledger.expect(LABELS_FILE, range(1, lines.height + len(malformed) + 1))
    for row, detail in malformed:
        ledger.reject(LABELS_FILE, row, INVALID, "malformed_json", detail)
    lines = parse_image_paths(lines, "path_to_image", "", RELEASE_SPLITS).join(
        csv_rows.rename({ROW: "csv_row", "frontal_lateral": "csv_view"}),
        on="path_to_image",
        how="left",
        maintain_order="left",
    )
    image = pl.col("path_to_image")
    lines = screen(
        ledger,
        lines,
        [
            *path_rules("path_to_image", EXPECTED_START),
            Rule(
                INVALID,
                "unknown_image",
                pl.col("csv_row").is_null(),
                pl.format("label line for {}, which has no row in {}", image, pl.lit(REPORTS_CSV)),
            ),
        ],
    )
    lines = screen(ledger, lines, [duplicates(["path_to_image"])])
    lines = screen_labels(ledger, lines, options)
    lines = screen(
        ledger,
        lines,
        [
            Rule(
                FILTERED,
                "lateral_view",
                stripped("csv_view") == "Lateral",
                pl.format("label line for the lateral image {}; the paper keeps frontal views only", image),
            ),
            Rule(
                INVALID,
                "image_rejected",
                ~image.is_in(images["path_to_image"].implode()),
                pl.format(
                    "label line for {}, whose row {} in {} is in quarantine (see that row)",
                    image,
                    pl.col("csv_row"),
                    pl.lit(REPORTS_CSV),
                ),
            ),
        ],
    )
    keep(ledger, lines)
    labelled = lines.join(
        images.select("path_to_image", "source", "study_id", "subject_id", "image_id", "split"),
        on="path_to_image",
    )
    return conform(labelled, LABELS_SCHEMA)


def _label_lines(path: Path) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """(the lines that hold a JSON object: row, path_to_image and the 14 labels as text, like a CSV's
    cells, so one parser checks both; (row, detail) of the lines that do not). Row n is the n-th
    non-blank line. A Python loop, because one bad line must not sink the file."""
    fields = ("path_to_image", *CHEXPERT_LABELS)
    rows: list[int] = []
    values: dict[str, list] = {name: [] for name in fields}
    malformed = []
    text = path.read_text(encoding="utf-8")
    for row, line in enumerate((line for line in text.splitlines() if line.strip()), start=1):
        try:
            record = json.loads(line, parse_constant=_reject_constant)
        except ValueError as exc:
            malformed.append((row, f"line {row} is not valid JSON ({exc})"))
            continue
        if not isinstance(record, dict):
            malformed.append((row, f"line {row} is a JSON {type(record).__name__}, not an object"))
            continue
        rows.append(row)
        for name in fields:
            values[name].append(record.get(name))
    lines = pl.DataFrame(
        [
            pl.Series(ROW, rows, pl.Int64),
            *(pl.Series(name, values[name], pl.String, strict=False) for name in fields),
        ]
    )
    return lines.with_columns(pl.lit(LABELS_FILE).alias(FILE)), malformed


def _reject_constant(name: str) -> float:
    """NaN and Infinity are not JSON, though Python's parser takes them."""
    raise ValueError(f"{name} is not a JSON value")
