"""PadChest-GR (BIMCV, grounded_reports_20240819) -> canonical images, reports and phrase boxes.

Input rows are the entries of ``grounded_reports_20240819.json``, one per study image (row n = the n-th
entry). ``master_table.csv`` (one row per study sentence) gives each ImageID its split, patient and sex;
PadChest's image table ``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv`` (160,861 images, most of
them outside PadChest-GR) gives its Projection. Both are lookups, not input rows: an entry they cannot
place is quarantined, naming the lookup that failed.

As in the paper's code: frontal images only (Projection PA or AP), boxes already normalised, one phrase
box per box of a grounded sentence (``label`` = ``sentence_en``, ``category`` = its labels);
``extra_boxes`` are not used. The report is the English sentences joined. Boxes are validated here: a
coordinate a rounding step outside [0, 1] is clipped, one further out is corruption
(``coordinate_out_of_range``, ``boxes.NORMALISED_TOLERANCE``), not clipped. An entry with an unusable box
is quarantined whole, so no phrase loses part of its grounding silently.
Images lie in ``images_grounding/`` (the layout RadVLM's code reads) or ``Padchest_GR_files/`` (the
release's archive folder).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from radvlm_pipeline.boxes import NORM, validate_normalised_boxes
from radvlm_pipeline.datasets import PADCHEST_GR
from radvlm_pipeline.images import ImageCheck, ImageProblem, check_image
from radvlm_pipeline.ledger import FILTERED, INVALID, Ledger
from radvlm_pipeline.schema import BOXES_SCHEMA, IMAGES_SCHEMA, REPORTS_SCHEMA, VIEWS_FRONTAL, conform
from radvlm_pipeline.sources.base import (
    NO_UPSTREAM,
    DatasetUnavailable,
    ReaderOptions,
    SourceTables,
    Upstream,
    read_csv_records,
    require_columns,
    require_file,
    require_folder,
)

GROUNDED_JSON = "grounded_reports_20240819.json"
MASTER_TABLE = "master_table.csv"
LABELS_CSV = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
IMAGE_FOLDERS = ("images_grounding", "Padchest_GR_files")
SPLITS = {"train": "train", "validation": "validate", "val": "validate", "valid": "validate", "test": "test"}
MASTER_COLUMNS = ("ImageID", "split", "PatientID", "PatientSex_DICOM")
TABLE_COLUMNS = ("ImageID", "Projection", "Columns_DICOM", "Rows_DICOM")


class _Rejected(Exception):
    def __init__(self, kind: str, reason: str, detail: str):
        super().__init__(detail)
        self.kind, self.reason, self.detail = kind, reason, detail


@dataclass
class _Entry:
    """A grounded entry that passed the checks that need no pixels."""

    row: int
    image_id: str
    study_id: str | None
    subject_id: str | None
    split: str
    sex: str | None
    view: str
    table_size: tuple[int | None, int | None]
    sentences: list[str]
    boxes: list[dict] = field(default_factory=list)  # finding, box index, sentence, labels, raw x1..y2


DATASET = PADCHEST_GR
UPSTREAM: tuple[str, ...] = ()


def read(data_root: Path, options: ReaderOptions, upstream: Upstream = NO_UPSTREAM) -> SourceTables:
    root = require_folder(PADCHEST_GR, data_root)
    entries = _load_entries(require_file(PADCHEST_GR, root, GROUNDED_JSON))
    image_ids = {e["ImageID"] for e in entries if isinstance(e, dict) and isinstance(e.get("ImageID"), str)}
    studies = _study_lookup(require_file(PADCHEST_GR, root, MASTER_TABLE))
    table = _table_lookup(require_file(PADCHEST_GR, root, LABELS_CSV), image_ids)
    folder = next((name for name in IMAGE_FOLDERS if (root / name).is_dir()), None)
    if folder is None:
        raise DatasetUnavailable(
            f"{PADCHEST_GR.title}: no image folder ({' or '.join(IMAGE_FOLDERS)}) under {root}"
        )

    ledger = Ledger(PADCHEST_GR.key)
    ledger.expect(GROUNDED_JSON, range(1, len(entries) + 1))
    first_row: dict[str, int] = {}
    candidates = []
    for row, raw in enumerate(entries, start=1):
        try:
            candidates.append(_check_entry(row, raw, first_row, studies, table))
        except _Rejected as rejected:
            ledger.reject(GROUNDED_JSON, row, rejected.kind, rejected.reason, rejected.detail)

    candidates = _drop_bad_boxes(candidates, ledger)
    sizes = _check_images(candidates, root / folder, options.image_check)
    kept = []
    for entry, size in zip(candidates, sizes):
        if isinstance(size, ImageProblem):
            ledger.reject(GROUNDED_JSON, entry.row, INVALID, size.reason, size.detail)
        else:
            kept.append((entry, size))
    ledger.keep(GROUNDED_JSON, [entry.row for entry, _ in kept])
    quarantine, accounting = ledger.finish()

    images = _images_table(kept, folder)
    boxes = _boxes_table([entry for entry, _ in kept])
    return SourceTables(
        images=images,
        reports=_reports_table([entry for entry, _ in kept]),
        boxes=boxes,
        quarantine=quarantine,
        accounting=accounting,
        facts={
            "release": PADCHEST_GR.release,
            "image_folder": folder,
            "grounded_entries": len(entries),
            "master_table_images": len(studies),
            "padchest_table_rows_matched": len(table),
            "clipped_boxes": sum(box["clipped"] for entry, _ in kept for box in entry.boxes),
            "extra_boxes_not_used": sum(
                len(box.get("extra_boxes") or [])
                for entry, _ in kept
                for box in _findings(entries[entry.row - 1])
            ),
            "sizes_from_png": sum(size is not None for _, size in kept),
            "png_size_differs_from_padchest_table": sum(
                size is not None and None not in entry.table_size and size != entry.table_size
                for entry, size in kept
            ),
        },
    )


def _load_entries(path: Path) -> list:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetUnavailable(f"{PADCHEST_GR.title}: cannot read {path}: {exc}") from exc
    if not isinstance(entries, list):
        raise DatasetUnavailable(
            f"{PADCHEST_GR.title}: {path} is not a JSON list ({PADCHEST_GR.release} layout expected)"
        )
    return entries


def _findings(entry: dict) -> list[dict]:
    return [finding for finding in entry["findings"] if isinstance(finding, dict)]


def _study_lookup(path: Path) -> dict[str, dict]:
    """ImageID -> the distinct non-blank splits of its rows, its patient and sex."""
    master = read_csv_records(path, PADCHEST_GR)
    require_columns(master, MASTER_COLUMNS, PADCHEST_GR, MASTER_TABLE)
    text = [pl.col(c).str.strip_chars() for c in MASTER_COLUMNS]
    per_image = (
        master.select(text)
        .group_by("ImageID")
        .agg(
            splits=pl.col("split").filter(pl.col("split") != "").drop_nulls().unique().sort(),
            subject_id=pl.col("PatientID").drop_nulls().first(),
            sex=pl.col("PatientSex_DICOM").filter(pl.col("PatientSex_DICOM").is_in(["M", "F"])).first(),
        )
    )
    return {row["ImageID"]: row for row in per_image.to_dicts()}


def _table_lookup(path: Path, image_ids: set[str]) -> dict[str, dict]:
    """ImageID -> Projection and DICOM size, for the grounded images only (the table is large)."""
    try:
        frame = (
            pl.scan_csv(path, infer_schema=False)
            .select(TABLE_COLUMNS)
            .filter(pl.col("ImageID").is_in(sorted(image_ids)))
            .unique("ImageID", keep="first", maintain_order=True)
            .collect()
        )
    except pl.exceptions.ColumnNotFoundError as exc:
        raise DatasetUnavailable(
            f"{PADCHEST_GR.title}: {LABELS_CSV} lacks a column of {TABLE_COLUMNS}: {exc}"
        ) from exc
    except Exception as exc:  # polars raises several error types for unreadable files
        raise DatasetUnavailable(f"{PADCHEST_GR.title}: cannot read {path}: {exc}") from exc
    return {row["ImageID"]: row for row in frame.to_dicts()}


def _check_entry(row: int, raw: object, first_row: dict[str, int], studies: dict, table: dict) -> _Entry:
    image_id = raw.get("ImageID") if isinstance(raw, dict) else None
    if not isinstance(image_id, str) or not image_id.strip():
        raise _Rejected(INVALID, "missing_value", "the entry has no ImageID")
    if image_id in first_row:
        raise _Rejected(
            INVALID, "duplicate_row", f"ImageID {image_id} already has an entry at row {first_row[image_id]}"
        )
    first_row[image_id] = row
    if image_id not in table:
        raise _Rejected(
            INVALID,
            "missing_projection",
            f"ImageID {image_id} has no row in {LABELS_CSV}, so its projection is unknown",
        )
    projection = (table[image_id]["Projection"] or "").strip()
    if projection not in VIEWS_FRONTAL:
        reason = "lateral_view" if projection == "L" else "non_frontal_view"
        raise _Rejected(
            FILTERED,
            reason,
            f"Projection '{projection}' of {image_id}; the paper keeps PA and AP images only",
        )
    split = _split(image_id, studies.get(image_id))
    findings = raw.get("findings")
    if not isinstance(findings, list) or not findings:
        raise _Rejected(INVALID, "empty_findings", f"ImageID {image_id} has no grounded sentences")
    study = studies[image_id]
    study_id = raw.get("StudyID")
    entry = _Entry(
        row,
        image_id,
        None if study_id is None else str(study_id),
        study["subject_id"],
        split,
        study["sex"],
        projection,
        (_integer(table[image_id]["Columns_DICOM"]), _integer(table[image_id]["Rows_DICOM"])),
        [],
    )
    for number, finding in enumerate(findings, start=1):
        sentence = finding.get("sentence_en") if isinstance(finding, dict) else None
        if not isinstance(sentence, str) or not sentence.strip():
            raise _Rejected(
                INVALID, "malformed_finding", f"finding {number} of {image_id} has no sentence_en"
            )
        entry.sentences.append(sentence.strip())
        labels = finding.get("labels") or []
        for index, box in enumerate(finding.get("boxes") or []):
            if not (
                isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
            ):
                raise _Rejected(
                    INVALID,
                    "malformed_box",
                    f"box {box!r} of finding {number} of {image_id} is not [x1, y1, x2, y2]",
                )
            entry.boxes.append(
                {
                    "finding": number,
                    "index": index,
                    "sentence": sentence.strip(),
                    "category": ", ".join(str(label) for label in labels) or None,
                    **dict(zip(NORM, (float(v) for v in box))),
                }
            )
    return entry


def _split(image_id: str, study: dict | None) -> str:
    if study is None or not study["splits"]:
        where = "no row" if study is None else "rows with a blank split"
        raise _Rejected(INVALID, "missing_split", f"ImageID {image_id} has {where} in {MASTER_TABLE}")
    if len(study["splits"]) > 1:
        raise _Rejected(
            INVALID,
            "conflicting_split",
            f"{MASTER_TABLE} puts ImageID {image_id} in splits {study['splits']}",
        )
    split = study["splits"][0]
    if split not in SPLITS:
        raise _Rejected(
            INVALID, "unknown_split", f"split '{split}' of {image_id}; expected train, validation or test"
        )
    return SPLITS[split]


def _integer(value: str | None) -> int | None:
    try:
        return int(float(value)) if value else None
    except ValueError:
        return None


def _drop_bad_boxes(candidates: list[_Entry], ledger: Ledger) -> list[_Entry]:
    """Validate and clip every box at once; an entry with an invalid box is quarantined whole."""
    rows = [{"row": e.row, "position": i, **box} for e in candidates for i, box in enumerate(e.boxes)]
    schema = {"row": pl.Int64, "position": pl.Int64, **{c: pl.Float64 for c in NORM}}
    checked = validate_normalised_boxes(
        pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    )
    bad = checked.filter(pl.col("invalid_reason").is_not_null()).unique(
        "row", keep="first", maintain_order=True
    )
    for row, reason, detail in bad.select("row", "invalid_reason", "invalid_detail").iter_rows():
        ledger.reject(GROUNDED_JSON, row, INVALID, reason, detail)
    validated = {
        (row, position): values
        for row, position, *values in checked.select("row", "position", *NORM, "clipped").iter_rows()
    }
    rejected = set(bad["row"])
    for entry in candidates:
        for position, box in enumerate(entry.boxes):
            *corners, clipped = validated[(entry.row, position)]
            box.update(zip(NORM, corners), clipped=clipped)
    return [entry for entry in candidates if entry.row not in rejected]


def _check_images(
    candidates: list[_Entry], folder: Path, level: ImageCheck
) -> list[tuple[int, int] | None | ImageProblem]:
    """(width, height) per entry, None when only existence was checked, or the problem found."""

    def check(image_id: str):
        try:
            return check_image(folder / image_id, level)
        except ImageProblem as problem:
            return problem

    with ThreadPoolExecutor(
        max_workers=min(8, os.cpu_count() or 1)
    ) as pool:  # Pillow decodes without the GIL
        return list(pool.map(check, [entry.image_id for entry in candidates]))


def _images_table(kept: list[tuple[_Entry, tuple[int, int] | None]], folder: str) -> pl.DataFrame:
    rows = [
        {
            "image_id": e.image_id,
            "subject_id": e.subject_id,
            "study_id": e.study_id,
            "split": e.split,
            "path": f"{folder}/{e.image_id}",
            "width": (size or e.table_size)[0],
            "height": (size or e.table_size)[1],
            "view": e.view,
            "sex": e.sex,
        }
        for e, size in kept
    ]
    frame = pl.DataFrame(
        rows,
        schema={
            "image_id": pl.String,
            "subject_id": pl.String,
            "study_id": pl.String,
            "split": pl.String,
            "path": pl.String,
            "width": pl.Int32,
            "height": pl.Int32,
            "view": pl.String,
            "sex": pl.String,
        },
    )
    return conform(
        frame.with_columns(
            source=pl.lit(PADCHEST_GR.key), dataset=pl.lit(PADCHEST_GR.key), original_path=pl.col("path")
        ),
        IMAGES_SCHEMA,
    )


def _reports_table(kept: list[_Entry]) -> pl.DataFrame:
    rows = [
        {
            "study_id": e.study_id,
            "subject_id": e.subject_id,
            "image_id": e.image_id,
            "split": e.split,
            "report": " ".join(e.sentences),
        }
        for e in kept
    ]
    frame = pl.DataFrame(
        rows,
        schema={
            "study_id": pl.String,
            "subject_id": pl.String,
            "image_id": pl.String,
            "split": pl.String,
            "report": pl.String,
        },
    )
    return conform(
        frame.with_columns(
            source=pl.lit(PADCHEST_GR.key),
            findings=pl.col("report"),
            impression=pl.lit(None, dtype=pl.String),
            path=pl.lit(GROUNDED_JSON),
        ),
        REPORTS_SCHEMA,
    )


def _boxes_table(kept: list[_Entry]) -> pl.DataFrame:
    rows = [
        {
            "image_id": e.image_id,
            "box_id": f"{e.image_id}:{b['finding']}:{b['index']}",
            "label": b["sentence"],
            "category": b["category"],
            **{c: b[c] for c in NORM},
        }
        for e in kept
        for b in e.boxes
    ]
    frame = pl.DataFrame(
        rows,
        schema={
            "image_id": pl.String,
            "box_id": pl.String,
            "label": pl.String,
            "category": pl.String,
            **{c: pl.Float64 for c in NORM},
        },
    )
    missing_pixels = pl.lit(None, dtype=pl.Float64)
    return conform(
        frame.with_columns(
            source=pl.lit(PADCHEST_GR.key),
            kind=pl.lit("phrase"),
            px_x1=missing_pixels,
            px_y1=missing_pixels,
            px_x2=missing_pixels,
            px_y2=missing_pixels,
            annotators=pl.lit(1),
            score=pl.lit(1.0),
        ),
        BOXES_SCHEMA,
    )
