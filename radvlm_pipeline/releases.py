"""Cheap fingerprints of the dataset folders, so a release or a correction is noticed without reading it.

Every file under a dataset folder counts: the tables, but also each report text, scene graph, label JSON
and image a reader opens, so a report corrected in place (same name, new text) changes its dataset's
fingerprint as surely as a new release does. Each file is stamped by its path, size and modification time
(ns), one ``stat`` per file over a sorted walk, streamed into one hash: nothing per file is kept, and a
folder of a million files takes seconds (``benchmarks/fingerprint_walk.py``).

Where modification times cannot be trusted (a copy that reset them, a filesystem with coarse times, an
edit that kept size and time), ``RADVLM_FINGERPRINT_CONTENT`` makes chosen datasets hash every file's
bytes instead: ``all`` or dataset keys separated by commas. That reads the whole folder on every check.

Hidden files (names starting with ``.``) are left out: no reader reads them, and editors and file
browsers write them beside the data.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from radvlm_pipeline.datasets import DATASETS

ABSENT = "absent"  # the data version of a dataset whose folder is not under the data root
FINGERPRINT_CONTENT_ENV = "RADVLM_FINGERPRINT_CONTENT"
ALL = "all"


@dataclass(frozen=True)
class DatasetFingerprint:
    dataset: str
    version: str  # changes when any file changes, appears or goes; ABSENT without a folder
    files: int  # how many files were stamped
    by_content: bool  # stamped by their bytes rather than by size and modification time


def content_hashed_datasets(setting: str | None = None) -> frozenset[str]:
    """The datasets ``RADVLM_FINGERPRINT_CONTENT`` (or ``setting``) asks to hash by content."""
    value = os.environ.get(FINGERPRINT_CONTENT_ENV, "") if setting is None else setting
    names = {name.strip() for name in value.split(",") if name.strip()}
    if ALL in names:
        return frozenset(DATASETS)
    unknown = sorted(names - set(DATASETS))
    if unknown:
        raise ValueError(
            f"{FINGERPRINT_CONTENT_ENV} names unknown datasets {unknown}; use '{ALL}' or some of: "
            f"{', '.join(DATASETS)}"
        )
    return frozenset(names)


def _file_content_digest(name: str, directory: int) -> str:
    descriptor = os.open(name, os.O_RDONLY, dir_fd=directory)
    with os.fdopen(descriptor, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def walk_digest(folder: Path, by_content: bool = False) -> tuple[str, int]:
    """(hash of every file's relative path and stamp in name order, number of files) under ``folder``.

    Directories are opened once and their entries stat'ed relative to them (no path resolution per
    file); each directory's lines are hashed in one call. Symbolic links are followed.
    """
    digest = hashlib.sha256()
    count = 0

    def visit(directory: int, prefix: str) -> None:
        nonlocal count
        lines = []
        for name in sorted(os.listdir(directory)):
            if name.startswith("."):
                continue
            info = os.stat(name, dir_fd=directory)
            if stat.S_ISDIR(info.st_mode):
                digest.update("".join(lines).encode())
                lines = []
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=directory)
                try:
                    visit(child, f"{prefix}{name}/")
                finally:
                    os.close(child)
            else:
                stamp = _file_content_digest(name, directory) if by_content else info.st_mtime_ns
                lines.append(f"{prefix}{name}\t{info.st_size}\t{stamp}\n")
                count += 1
        digest.update("".join(lines).encode())

    top = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        visit(top, "")
    finally:
        os.close(top)
    return digest.hexdigest()[:16], count


def fingerprint(dataset: str, data_root: Path, by_content: bool | None = None) -> DatasetFingerprint:
    """``by_content``: None follows ``RADVLM_FINGERPRINT_CONTENT``."""
    folder = DATASETS[dataset].root(Path(data_root))
    if by_content is None:
        by_content = dataset in content_hashed_datasets()
    if not folder.is_dir():
        return DatasetFingerprint(dataset, ABSENT, 0, by_content)
    version, files = walk_digest(folder, by_content)
    return DatasetFingerprint(dataset, version, files, by_content)


def fingerprints(data_root: Path) -> dict[str, DatasetFingerprint]:
    """Every dataset's fingerprint, keyed like ``DATASETS``."""
    by_content = content_hashed_datasets()
    return {dataset: fingerprint(dataset, data_root, dataset in by_content) for dataset in DATASETS}
