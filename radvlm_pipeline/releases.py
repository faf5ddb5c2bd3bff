"""Cheap fingerprints of the dataset folders, so a new release (or new rows) is noticed without reading it.

A release changes a dataset's tabular and index files: metadata and label CSVs, split files, JSON lists.
Each of those is stamped by its path, size and modification time (ns), which stand for its content at a
cost of one ``stat``. The hundreds of thousands of per-image files (JPEGs, DICOMs, report texts, scene
graphs) are not listed one by one: where a reader takes its rows from such a folder rather than from an
index file (Chest ImaGenome's scene graphs), the folder itself is stamped, and its modification time
changes when files are added, removed or renamed in it.

The fingerprint also names which corpus partitions a release can change: a dataset's release changes the
rows of every Table 1 row drawn from the same patients (a patient held out for evaluation in one dataset
is held out of training in all that share them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from radvlm_pipeline.corpus.table import PATIENT_NAMESPACE, TABLE_1
from radvlm_pipeline.datasets import DATASETS

# Globs under each dataset folder, none recursive, so a tick lists a handful of small folders only. They
# match the files each reader takes rows from (see the readers' docstrings), under any release's name.
INDEX_PATTERNS: dict[str, tuple[str, ...]] = {
    "mimic_cxr": ("*.csv", "*.csv.gz"),  # metadata, split, chexpert (and negbio) label files
    "chexpert": ("*/*.csv",),  # CheXpert-v1.0-small/{train,valid}.csv, CheXpert/test_labels.csv
    "chexpert_plus": ("*.csv", "*.csv.gz", "chexbert_labels/*.json", "chexbert_labels/*.jsonl"),
    "chest_imagenome": ("silver_dataset/splits/*.csv", "silver_dataset/scene_graph"),
    "vindr_cxr": ("annotations/*.csv",),
    "ms_cxr": ("*.csv",),
    "padchest_gr": ("*.json", "*.jsonl", "*.csv", "*.csv.gz"),
}

ABSENT = "absent"  # the data version of a dataset whose folder is not under the data root


@dataclass(frozen=True)
class FileStamp:
    path: str  # relative to the dataset folder
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class DatasetFingerprint:
    dataset: str
    version: str  # changes when any stamped file changes; ABSENT without a folder
    files: tuple[FileStamp, ...]


def stamp_files(folder: Path, patterns: tuple[str, ...]) -> tuple[FileStamp, ...]:
    stamps = set()
    for pattern in patterns:
        for path in folder.glob(pattern):
            stat = path.stat()
            stamps.add(FileStamp(path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(stamps, key=lambda s: s.path))


def fingerprint(dataset: str, data_root: Path) -> DatasetFingerprint:
    folder = DATASETS[dataset].root(Path(data_root))
    if not folder.is_dir():
        return DatasetFingerprint(dataset, ABSENT, ())
    files = stamp_files(folder, INDEX_PATTERNS[dataset])
    digest = hashlib.sha256()
    for stamp in files:
        digest.update(f"{stamp.path}\t{stamp.size}\t{stamp.mtime_ns}\n".encode())
    return DatasetFingerprint(dataset, digest.hexdigest()[:16], files)


def fingerprints(data_root: Path) -> dict[str, DatasetFingerprint]:
    """Every dataset's fingerprint, keyed like ``DATASETS``."""
    return {dataset: fingerprint(dataset, data_root) for dataset in DATASETS}


def corpus_partitions_changed_by(dataset: str) -> list[str]:
    """The corpus partitions (``<task>__<source>``) whose rows a release of ``dataset`` can change."""
    namespace = PATIENT_NAMESPACE[dataset]
    return [row.key for row in TABLE_1 if PATIENT_NAMESPACE[row.source] == namespace]
