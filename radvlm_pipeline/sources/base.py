"""What every reader shares: its inputs and outputs, CSV reading with row numbers, writing tables."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import polars as pl

from radvlm_pipeline.datasets import Dataset
from radvlm_pipeline.dicom import PNG_MAX_SIDE
from radvlm_pipeline.images import DEFAULT_IMAGE_CHECK, ImageCheck
from radvlm_pipeline.labels import UncertainPolicy
from radvlm_pipeline.layout import StorageLayout
from radvlm_pipeline.ledger import ROW
from radvlm_pipeline.schema import TABLE_SCHEMAS, conform, empty


class DatasetUnavailable(RuntimeError):
    """The dataset folder or one of its required files is missing or unreadable."""


@dataclass(frozen=True)
class ReaderOptions:
    uncertain: UncertainPolicy = UncertainPolicy.ABSENT
    image_check: ImageCheck = DEFAULT_IMAGE_CHECK
    # VinDr-CXR weighted box fusion (ensemble-boxes) of the three radiologists' boxes. IoU 0.1 is the
    # paper's code: radiologists outlining one finding often disagree on its extent, so a stricter
    # threshold keeps two or three near-duplicate boxes of one finding.
    wbf_iou_thr: float = 0.1
    wbf_skip_box_thr: float = 0.0
    wbf_conf_type: str = "avg"
    # VinDr-CXR DICOM -> 8-bit conversion: longest side of the written PNG (None keeps the DICOM size).
    dicom_max_side: int | None = PNG_MAX_SIDE
    # Where converted images go (VinDr-CXR) and the image checks' verdicts are kept; the storage root.
    storage_root: Path | None = None

    def image_verdicts(self, dataset: str) -> Path | None:
        """Where the image check keeps its verdicts on ``dataset``'s images (nowhere without a storage root)."""
        return StorageLayout(self.storage_root).image_verdicts(dataset) if self.storage_root else None


@dataclass
class SourceTables:
    """A reader's result: the canonical tables plus facts worth showing in metadata."""

    images: pl.DataFrame = field(default_factory=lambda: empty(TABLE_SCHEMAS["images"]))
    reports: pl.DataFrame = field(default_factory=lambda: empty(TABLE_SCHEMAS["reports"]))
    labels: pl.DataFrame = field(default_factory=lambda: empty(TABLE_SCHEMAS["labels"]))
    boxes: pl.DataFrame = field(default_factory=lambda: empty(TABLE_SCHEMAS["boxes"]))
    quarantine: pl.DataFrame = field(default_factory=lambda: empty(TABLE_SCHEMAS["quarantine"]))
    accounting: pl.DataFrame = field(default_factory=lambda: empty(TABLE_SCHEMAS["accounting"]))
    facts: dict[str, Any] = field(default_factory=dict)

    def tables(self) -> dict[str, pl.DataFrame]:
        return {name: getattr(self, name) for name in TABLE_SCHEMAS}


Upstream = Mapping[str, pl.DataFrame]  # the images table of each source a reader builds on, by source key
NO_UPSTREAM: Upstream = MappingProxyType({})


class SourceReader(Protocol):
    """The shape of every reader module, so the source assets are built from the registry with no reader
    special-cased. A reader building on other sources (Chest ImaGenome and MS-CXR annotate MIMIC-CXR's
    images) names them in ``UPSTREAM``: their assets run first and ``read`` gets their images tables."""

    DATASET: Dataset
    UPSTREAM: tuple[str, ...]

    def read(self, data_root: Path, options: ReaderOptions, upstream: Upstream) -> SourceTables: ...


def require_folder(dataset: Dataset, data_root: Path) -> Path:
    root = dataset.root(data_root)
    if not root.is_dir():
        raise DatasetUnavailable(
            f"{dataset.title}: dataset folder {root} does not exist. Put the {dataset.release} release "
            f"there, or point RADVLM_DATA_ROOT at a folder that holds '{dataset.folder}/'."
        )
    return root


def require_file(dataset: Dataset, root: Path, *candidates: str) -> Path:
    """The first of the candidate files (e.g. ``x.csv.gz`` then ``x.csv``) that exists."""
    for name in candidates:
        if (root / name).is_file():
            return root / name
    raise DatasetUnavailable(
        f"{dataset.title}: none of {', '.join(candidates)} found under {root} ({dataset.release} layout expected)."
    )


def require_columns(frame: pl.DataFrame, columns: Iterable[str], dataset: Dataset, file: str) -> None:
    """A file without a column the reader relies on is another release or a renamed file: the whole
    source fails, naming what to fix, instead of every row being quarantined."""
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise DatasetUnavailable(
            f"{dataset.title}: {file} lacks the columns {missing} of the {dataset.release} release."
        )


def read_csv_records(path: Path, dataset: Dataset) -> pl.DataFrame:
    """Every column as a string (so bad values reach the reader's checks instead of the CSV parser),
    plus ``row``, the 1-based record number. An empty field reads as null (the default of polars 1.x and 2.x;
    polars 2 removed the ``missing_utf8_is_empty_string`` switch)."""
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except Exception as exc:  # polars raises several error types for unreadable files
        raise DatasetUnavailable(f"{dataset.title}: cannot read {path}: {exc}") from exc
    return frame.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def write_tables(tables: SourceTables, layout: StorageLayout, source: str) -> dict[str, Path]:
    """Write each canonical table plus the facts into the source's folder; byte-identical for equal input."""
    layout.source_dir(source).mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in tables.tables().items():
        target = layout.source_table(source, name)
        conform(frame, TABLE_SCHEMAS[name]).write_parquet(target, compression="zstd", statistics=True)
        written[name] = target
    layout.source_facts(source).write_text(
        json.dumps(tables.facts, indent=2, sort_keys=True, default=str) + "\n"
    )
    return written


def read_table(layout: StorageLayout, source: str, name: str) -> pl.DataFrame:
    return pl.read_parquet(layout.source_table(source, name))
