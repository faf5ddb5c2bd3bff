"""CheXpert v1.0-small (train, valid) and its test set as released with CheXlocalize -> canonical tables.

Layout read, under the ``chexpert/`` data folder:

- ``CheXpert-v1.0-small/train.csv`` and ``valid.csv`` (required): Path
  (``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``, relative to ``chexpert/``), Sex
  (Male / Female / Unknown), Age, Frontal/Lateral, AP/PA, then the 14 labels (1.0, 0.0, -1.0, blank).
  The full-resolution ``CheXpert-v1.0`` release has the same layout and is read when the small one is
  absent.
- ``CheXpert/test_labels.csv`` (optional): the test set's radiologist labels, published with CheXlocalize
  (Stanford AIMI). Its ``CheXpert/`` folder goes inside ``chexpert/`` as downloaded. Path
  (``test/patient64741/study1/view1_frontal.jpg``) is relative to that ``CheXpert/`` folder. The file has the
  14 labels (0 / 1) and no Sex, Age or view columns. Frontal views are therefore told by the file name,
  and view and sex are null. Without the file, the tables have no test rows and ``facts["test_set"]``
  says so.

Ids: ``image_id`` is the image path below the release folder, without extension
(``train/patient00001/study1/view1_frontal``); CheXpert-Plus names the same image the same way.
``subject_id`` is ``patient00001``; ``study_id`` is ``patient00001/study1``. Labels are per image
(``image_id`` set), as released. Frontal views only (the paper): laterals are quarantined as ``filtered``.
A blank Sex or AP/PA is kept as null; nothing else in a row is optional.

The helpers below the reader are shared with the CheXpert-Plus reader, which names images the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from radvlm_pipeline.datasets import CHEXPERT
from radvlm_pipeline.images import ImageCheck, check_images
from radvlm_pipeline.labels import parse_label_columns
from radvlm_pipeline.ledger import FILTERED, INVALID, ROW, Ledger
from radvlm_pipeline.schema import CHEXPERT_LABELS, IMAGES_SCHEMA, LABELS_SCHEMA, conform
from radvlm_pipeline.sources.base import (
    NO_UPSTREAM,
    DatasetUnavailable,
    ReaderOptions,
    SourceTables,
    Upstream,
    read_csv_records,
    require_columns,
    require_folder,
)
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

RELEASE_FOLDERS = ("CheXpert-v1.0-small", "CheXpert-v1.0")
TEST_FOLDER = "CheXpert"
TEST_LABELS = f"{TEST_FOLDER}/test_labels.csv"
SPLIT_NAMES = {"train": "train", "valid": "validate", "test": "test"}
METADATA_COLUMNS = ("Sex", "Frontal/Lateral", "AP/PA")
SEX_CODES = {"Male": "M", "Female": "F"}  # "Unknown" and blank become null


@dataclass(frozen=True)
class LabelFile:
    """One released CSV: where it lies, which split it holds and how its Path column reads."""

    csv: str  # relative to the dataset root
    split: str  # the release's split folder: train, valid or test
    image_folder: str  # the folder Path is relative to, relative to the dataset root ("" = the root)
    release_prefix: str  # what Path starts with before the split folder
    has_metadata: bool  # Sex, Age, Frontal/Lateral, AP/PA columns (not in the test labels)


DATASET = CHEXPERT
UPSTREAM: tuple[str, ...] = ()


def read(data_root: Path, options: ReaderOptions, upstream: Upstream = NO_UPSTREAM) -> SourceTables:
    root = require_folder(CHEXPERT, data_root)
    release = next((name for name in RELEASE_FOLDERS if (root / name).is_dir()), None)
    if release is None:
        raise DatasetUnavailable(
            f"{CHEXPERT.title}: neither {' nor '.join(RELEASE_FOLDERS)} found under {root} "
            f"({CHEXPERT.release} layout expected: <release>/train.csv, valid.csv and the images)."
        )
    files = [
        LabelFile(f"{release}/{split}.csv", split, "", f"{release}/", True) for split in ("train", "valid")
    ]
    for file in files:
        if not (root / file.csv).is_file():
            raise DatasetUnavailable(
                f"{CHEXPERT.title}: {root / file.csv} is missing ({CHEXPERT.release} layout)."
            )
    if (root / TEST_LABELS).is_file():
        files.append(LabelFile(TEST_LABELS, "test", TEST_FOLDER, "", False))
        test_set = f"{TEST_LABELS} (CheXlocalize release)"
    else:
        test_set = (
            f"absent: no {TEST_LABELS}; put the CheXlocalize release's CheXpert/ folder inside {root} "
            "to evaluate classification on the CheXpert test set"
        )

    ledger = Ledger(CHEXPERT.key)
    images, labels = [], []
    for file in files:
        file_images, file_labels = _read_label_file(root, file, ledger, options)
        images.append(file_images)
        labels.append(file_labels)
    quarantine, accounting = ledger.finish()
    return SourceTables(
        images=pl.concat(images),
        labels=pl.concat(labels),
        quarantine=quarantine,
        accounting=accounting,
        facts={
            "release": release,
            "test_set": test_set,
            "uncertain_labels": options.uncertain.value,
            "image_check": options.image_check.value,
        },
    )


def _read_label_file(
    root: Path, file: LabelFile, ledger: Ledger, options: ReaderOptions
) -> tuple[pl.DataFrame, pl.DataFrame]:
    raw = read_csv_records(root / file.csv, CHEXPERT)
    require_columns(
        raw, ["Path", *(METADATA_COLUMNS if file.has_metadata else ()), *CHEXPERT_LABELS], CHEXPERT, file.csv
    )
    rows = parse_image_paths(
        raw.with_columns(pl.lit(file.csv).alias(FILE)), "Path", file.release_prefix, (file.split,)
    )
    declare(ledger, rows)
    if file.has_metadata:
        view_rules = [
            missing_values(["Frontal/Lateral"]),
            unknown_value("Frontal/Lateral", ("Frontal", "Lateral")),
            Rule(
                FILTERED,
                "lateral_view",
                stripped("Frontal/Lateral") == "Lateral",
                pl.format("lateral view {}; the paper keeps frontal (PA/AP) views only", pl.col("Path")),
            ),
        ]
    else:  # the test labels have no view column: the file name says frontal or lateral
        view_rules = [
            Rule(
                FILTERED,
                "lateral_view",
                pl.col("orientation") == "lateral",
                pl.format(
                    "lateral view {} (by its file name); the paper keeps frontal views only", pl.col("Path")
                ),
            ),
        ]
    rows = screen(ledger, rows, [*path_rules("Path", f"{file.release_prefix}{file.split}/"), *view_rules])
    rows = screen(ledger, rows, [duplicates(["Path"])])
    rows = screen_labels(ledger, rows, options)
    folder = f"{file.image_folder}/" if file.image_folder else ""
    rows = screen_images(
        ledger,
        rows.with_columns((pl.lit(folder) + pl.col("Path")).alias("path")),
        root,
        options.image_check,
        options.image_verdicts(CHEXPERT.key),
    )
    keep(ledger, rows)

    rows = rows.with_columns(
        pl.lit(CHEXPERT.key).alias("source"),
        pl.lit(CHEXPERT.key).alias("dataset"),
        pl.lit(SPLIT_NAMES[file.split]).alias("split"),
        pl.col("path").alias("original_path"),
        sex_expression("Sex") if file.has_metadata else pl.lit(None, pl.String).alias("sex"),
        (stripped("AP/PA") if file.has_metadata else pl.lit(None, pl.String)).alias("view"),
    )
    return conform(rows, IMAGES_SCHEMA), conform(rows, LABELS_SCHEMA)


# --- Shared with the CheXpert-Plus reader ------------------------------------------------------------
def parse_image_paths(
    raw: pl.DataFrame, column: str, release_prefix: str, splits: tuple[str, ...]
) -> pl.DataFrame:
    """Add image_id, subject_id, study_id and orientation from a CheXpert image path (null where the
    path does not have the released form)."""
    pattern = (
        f"^{re.escape(release_prefix)}"
        rf"(?P<image_id>(?:{'|'.join(splits)})/(?P<subject_id>patient\d+)/(?P<study>study\d+)/"
        r"view\d+_(?P<orientation>frontal|lateral))\.jpg$"
    )
    parts = pl.col(column).str.extract_groups(pattern)
    return raw.with_columns(
        parts.struct.field("image_id"),
        parts.struct.field("subject_id"),
        pl.concat_str(parts.struct.field("subject_id"), parts.struct.field("study"), separator="/").alias(
            "study_id"
        ),
        parts.struct.field("orientation"),
    )


def stripped(column: str) -> pl.Expr:
    """The value without surrounding blanks; null where blank."""
    return pl.when(~blank(column)).then(pl.col(column).str.strip_chars())


def sex_expression(column: str) -> pl.Expr:
    return stripped(column).replace_strict(SEX_CODES, default=None, return_dtype=pl.String).alias("sex")


def unknown_value(column: str, allowed: tuple[str, ...]) -> Rule:
    return Rule(
        INVALID,
        "unknown_value",
        ~stripped(column).is_in(allowed),
        pl.format(
            "{} is '{}'; expected one of {}", pl.lit(column), pl.col(column), pl.lit(", ".join(allowed))
        ),
    )


def path_rules(column: str, expected_start: str) -> list[Rule]:
    """A blank image path, or one not of the released form (``parse_image_paths`` found no image_id)."""
    return [
        missing_values([column]),
        Rule(
            INVALID,
            "unexpected_path",
            pl.col("image_id").is_null(),
            pl.format(
                "{} '{}' is not of the released form {}patientNNNNN/studyN/viewN_frontal.jpg (or _lateral)",
                pl.lit(column),
                pl.col(column),
                pl.lit(expected_start),
            ),
        ),
    ]


def screen_labels(ledger: Ledger, rows: pl.DataFrame, options: ReaderOptions) -> pl.DataFrame:
    """The 14 label columns as booleans (uncertain per the options); rows with an unknown value quarantined."""
    parsed, unknown = parse_label_columns(rows, options.uncertain)
    for file, row, reason, detail in (
        unknown.join(rows.select(ROW, FILE), on=ROW).select(FILE, ROW, "reason", "detail").iter_rows()
    ):
        ledger.reject(file, row, INVALID, reason, detail)
    return parsed


def screen_images(
    ledger: Ledger, rows: pl.DataFrame, root: Path, level: ImageCheck, verdicts: Path | None
) -> pl.DataFrame:
    """Check each row's image (``path``, relative to ``root``; earlier ``verdicts`` reused), quarantine
    rows whose image is missing or does not decode, and give the others width/height from the file. The
    CSVs carry no sizes, so even an existence-only check reads the header."""
    level = ImageCheck.HEADER if level is ImageCheck.EXISTS else level
    checked = rows.hstack(check_images(root, rows["path"].to_list(), level, verdicts))
    return screen(
        ledger,
        checked,
        [
            Rule(
                INVALID,
                pl.col("image_problem"),
                pl.col("image_problem").is_not_null(),
                pl.col("image_problem_detail"),
            ),
        ],
    )
