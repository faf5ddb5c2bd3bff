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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from radvlm_pipeline.datasets import CHEXPERT, Dataset
from radvlm_pipeline.images import ImageProblem, check_image
from radvlm_pipeline.labels import parse_label_columns
from radvlm_pipeline.ledger import FILTERED, INVALID, Ledger
from radvlm_pipeline.schema import CHEXPERT_LABELS, IMAGES_SCHEMA, LABELS_SCHEMA, conform
from radvlm_pipeline.sources.base import (
    ROW,
    DatasetUnavailable,
    ImageCheck,
    ReaderOptions,
    SourceTables,
    read_csv_records,
    require_folder,
)

RELEASE_FOLDERS = ("CheXpert-v1.0-small", "CheXpert-v1.0")
TEST_FOLDER = "CheXpert"
TEST_LABELS = f"{TEST_FOLDER}/test_labels.csv"
SPLIT_NAMES = {"train": "train", "valid": "validate", "test": "test"}
METADATA_COLUMNS = ("Sex", "Frontal/Lateral", "AP/PA")
SEX_CODES = {"Male": "M", "Female": "F"}  # "Unknown" and blank become null
REJECTION_COLUMNS = (ROW, "kind", "reason", "detail")
IMAGE_BATCH = 512  # images checked per thread task: one task per image costs more than a header read


@dataclass(frozen=True)
class LabelFile:
    """One released CSV: where it lies, which split it holds and how its Path column reads."""

    csv: str  # relative to the dataset root
    split: str  # the release's split folder: train, valid or test
    image_folder: str  # the folder Path is relative to, relative to the dataset root ("" = the root)
    release_prefix: str  # what Path starts with before the split folder
    has_metadata: bool  # Sex, Age, Frontal/Lateral, AP/PA columns (not in the test labels)


def read(data_root: Path, options: ReaderOptions) -> SourceTables:
    root = require_folder(CHEXPERT, data_root)
    release = next((name for name in RELEASE_FOLDERS if (root / name).is_dir()), None)
    if release is None:
        raise DatasetUnavailable(
            f"{CHEXPERT.title}: neither {' nor '.join(RELEASE_FOLDERS)} found under {root} "
            f"({CHEXPERT.release} layout expected: <release>/train.csv, valid.csv and the images)."
        )
    files = [LabelFile(f"{release}/{split}.csv", split, "", f"{release}/", True) for split in ("train", "valid")]
    for file in files:
        if not (root / file.csv).is_file():
            raise DatasetUnavailable(f"{CHEXPERT.title}: {root / file.csv} is missing ({CHEXPERT.release} layout).")
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
    required = ["Path", *(METADATA_COLUMNS if file.has_metadata else ()), *CHEXPERT_LABELS]
    require_columns(raw, required, CHEXPERT, file.csv)
    ledger.expect(file.csv, raw[ROW])
    frame = parse_image_paths(raw, "Path", file.release_prefix, (file.split,))

    rejections = path_rejections(frame, "Path", f"{file.release_prefix}{file.split}/")
    if file.has_metadata:
        rejections += value_rejections(frame, "Frontal/Lateral", ("Frontal", "Lateral"))
        rejections.append(
            rejected(frame, blank_to_null("Frontal/Lateral") == "Lateral", FILTERED, "lateral_view",
                     pl.format("lateral view {}; the paper keeps frontal (PA/AP) views only", pl.col("Path")))
        )
    else:  # the test labels have no view column: the file name says frontal or lateral
        rejections.append(
            rejected(frame, pl.col("orientation") == "lateral", FILTERED, "lateral_view",
                     pl.format("lateral view {} (by its file name); the paper keeps frontal views only", pl.col("Path")))
        )
    parsed, unknown_labels = parse_label_columns(frame, options.uncertain)
    rejections.append(unknown_labels.select(ROW, pl.lit(INVALID).alias("kind"), "reason", "detail"))
    kept, _ = keep_unrejected(parsed, rejections, ledger, file.csv)

    folder = f"{file.image_folder}/" if file.image_folder else ""
    kept = kept.with_columns((pl.lit(folder) + pl.col("Path")).alias("path"))
    kept, _ = with_image_sizes(kept, root, options.image_check, ledger, file.csv)
    ledger.keep(file.csv, kept[ROW])

    kept = kept.with_columns(
        pl.lit(CHEXPERT.key).alias("source"),
        pl.lit(SPLIT_NAMES[file.split]).alias("split"),
        pl.col("path").alias("original_path"),
        sex_expression("Sex") if file.has_metadata else pl.lit(None, pl.String).alias("sex"),
        blank_to_null("AP/PA").alias("view") if file.has_metadata else pl.lit(None, pl.String).alias("view"),
    )
    images = conform(kept.with_columns(pl.lit(CHEXPERT.key).alias("dataset")), IMAGES_SCHEMA)
    return images, conform(kept, LABELS_SCHEMA)


# --- Shared with the CheXpert-Plus reader ------------------------------------------------------------
def require_columns(raw: pl.DataFrame, columns: list[str], dataset: Dataset, file: str) -> None:
    missing = [name for name in columns if name not in raw.columns]
    if missing:
        raise DatasetUnavailable(
            f"{dataset.title}: {file} lacks columns {missing}; is it the {dataset.release} file?"
        )


def parse_image_paths(raw: pl.DataFrame, column: str, release_prefix: str, splits: tuple[str, ...]) -> pl.DataFrame:
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
        pl.concat_str(parts.struct.field("subject_id"), parts.struct.field("study"), separator="/").alias("study_id"),
        parts.struct.field("orientation"),
    )


def rejected(frame: pl.DataFrame, when: pl.Expr, kind: str, reason: str, detail: pl.Expr) -> pl.DataFrame:
    """The rows of ``frame`` where ``when`` holds, as quarantine candidates (row, kind, reason, detail).
    The detail is computed over the whole frame, so it may refer to other rows (``over`` windows)."""
    return (
        frame.select(ROW, when.alias("rejected"), pl.lit(kind).alias("kind"), pl.lit(reason).alias("reason"),
                     detail.alias("detail"))
        .filter("rejected")
        .drop("rejected")
    )


def blank_to_null(column: str) -> pl.Expr:
    value = pl.col(column).str.strip_chars()
    return pl.when(value != "").then(value)


def sex_expression(column: str) -> pl.Expr:
    return blank_to_null(column).replace_strict(SEX_CODES, default=None, return_dtype=pl.String).alias("sex")


def value_rejections(frame: pl.DataFrame, column: str, allowed: tuple[str, ...]) -> list[pl.DataFrame]:
    value = blank_to_null(column)
    return [
        rejected(frame, value.is_null(), INVALID, "missing_value", pl.lit(f"{column} is blank")),
        rejected(frame, value.is_not_null() & ~value.is_in(allowed), INVALID, "unknown_value",
                 pl.format("{} is '{}'; expected one of {}", pl.lit(column), pl.col(column), pl.lit(", ".join(allowed)))),
    ]


def path_rejections(frame: pl.DataFrame, column: str, expected_start: str) -> list[pl.DataFrame]:
    """Blank paths, paths not of the released form, and repeats of an earlier row's path (the first
    row of a path is kept, the others quarantined). Expects ``parse_image_paths`` to have run."""
    path = blank_to_null(column)
    return [
        rejected(frame, path.is_null(), INVALID, "missing_value", pl.lit(f"{column} is blank")),
        rejected(frame, path.is_not_null() & pl.col("image_id").is_null(), INVALID, "unexpected_path",
                 pl.format("{} '{}' is not of the released form {}patientNNNNN/studyN/viewN_frontal.jpg (or _lateral)",
                           pl.lit(column), pl.col(column), pl.lit(expected_start))),
        rejected(frame, path.is_not_null() & ~pl.col(column).is_first_distinct(), INVALID, "duplicate_row",
                 pl.format("{} {} repeats row {}; the first row is kept", pl.lit(column), pl.col(column),
                           pl.col(ROW).first().over(column))),
    ]


def keep_unrejected(
    frame: pl.DataFrame, rejections: list[pl.DataFrame], ledger: Ledger, file: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Quarantine each rejected row once (the first reason listed wins); return (other rows, the
    rejections recorded)."""
    first = pl.concat([r.select(REJECTION_COLUMNS) for r in rejections]).unique(ROW, keep="first", maintain_order=True)
    quarantine(ledger, file, first)
    return frame.filter(~pl.col(ROW).is_in(first[ROW].implode())), first


def quarantine(ledger: Ledger, file: str, rejections: pl.DataFrame) -> None:
    for row, kind, reason, detail in rejections.select(REJECTION_COLUMNS).iter_rows():
        ledger.reject(file, row, kind, reason, detail)


def with_image_sizes(
    frame: pl.DataFrame, root: Path, level: ImageCheck, ledger: Ledger, file: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Check each row's image (``path``, relative to ``root``) and quarantine rows whose image is missing
    or does not decode. Returns (the other rows with width/height read from their file, the rejections).
    The CSVs carry no image sizes, so even an existence-only check reads the header."""
    level = ImageCheck.HEADER if level is ImageCheck.EXISTS else level

    def outcomes_of(batch: list[str]) -> list[tuple[int, int] | ImageProblem]:
        outcomes = []
        for relative in batch:
            try:
                outcomes.append(check_image(root / relative, level))
            except ImageProblem as problem:
                outcomes.append(problem)
        return outcomes

    paths = frame["path"].to_list()
    batches = [paths[start : start + IMAGE_BATCH] for start in range(0, len(paths), IMAGE_BATCH)]
    with ThreadPoolExecutor(max_workers=8) as pool:  # Pillow releases the GIL while decoding
        outcomes = [outcome for batch in pool.map(outcomes_of, batches) for outcome in batch]
    problems = pl.DataFrame(
        [
            (row, INVALID, result.reason, result.detail.replace(f"{root}/", ""))
            for row, result in zip(frame[ROW], outcomes, strict=True)
            if isinstance(result, ImageProblem)
        ],
        schema={ROW: pl.Int64, "kind": pl.String, "reason": pl.String, "detail": pl.String},
        orient="row",
    )
    quarantine(ledger, file, problems)
    sizes = [(None, None) if isinstance(result, ImageProblem) else result for result in outcomes]
    sized = frame.with_columns(
        pl.Series("width", [width for width, _ in sizes], pl.Int32),
        pl.Series("height", [height for _, height in sizes], pl.Int32),
    )
    return sized.filter(pl.col("width").is_not_null()), problems
