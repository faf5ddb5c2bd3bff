"""Files written so that equal content gives equal bytes: the bundled sample is compared byte for byte
with a fresh run of the generator, and the paper-scale data root must come out identical whatever the
number of processes writing it or the runs a resume took."""

from __future__ import annotations

import csv
import functools
import gzip
import io
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from radvlm_pipeline.images import usable_cores

PARTIAL = ".partial"  # suffix of a file being written; only a complete file gets its final name


def csv_bytes(header: Iterable[str], rows: Iterable[Iterable[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def gzip_bytes(payload: bytes, level: int = 9) -> bytes:
    """gzip without a file name or timestamp in its header, so equal payloads give equal bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=level) as packed:
        packed.write(payload)
    return buffer.getvalue()


def write_gzip(path: Path, payload: bytes, level: int = 9) -> None:
    write_file(path, gzip_bytes(payload, level))


def write_file(path: Path, payload: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(payload, str):
        payload = payload.encode()
    path.write_bytes(payload)


def write_table(path: Path, payload: bytes | str) -> None:
    """A table file of the paper-scale root, written whole under a temporary name then renamed; left
    alone when it already holds these bytes, so a resumed run keeps its modification time (the release
    sensor fingerprints tables by size and mtime and would otherwise see a new release)."""
    if isinstance(payload, str):
        payload = payload.encode()
    if path.is_file() and path.stat().st_size == len(payload) and path.read_bytes() == payload:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL)
    partial.write_bytes(payload)
    os.replace(partial, path)


class FileJobs:
    """The per-file work of the paper-scale generator (images, report files, scene graphs), collected
    while the tables are written and then run in a process pool.

    Each job is ``function(out_root, seed, items)``, a module-level function (or a partial of one) so it
    pickles by name; it must make every file a pure function of the seed and its item, write it through
    ``complete_file`` and return how many files it wrote. Files are thus byte-identical whatever the pool size, and a run
    that was stopped resumes where it was: files already under their final name are skipped.
    """

    def __init__(self, out_root: Path, seed: int, chunk: int = 1_000):
        self.out_root = out_root
        self.seed = seed
        self.chunk = chunk
        self.jobs: list[tuple[Callable, Sequence, str]] = []

    def add(self, function: Callable[[Path, int, Sequence], int], items: Sequence, label: str) -> None:
        """Queue ``items`` in chunks (a task per file would cost more in pickling than in writing)."""
        for start in range(0, len(items), self.chunk):
            self.jobs.append((function, items[start : start + self.chunk], label))

    def run(self, workers: int | None = None) -> dict[str, int]:
        """Files written per label (0 for a label whose files were all there already)."""
        workers = workers or usable_cores()
        written: dict[str, int] = {label: 0 for _, _, label in self.jobs}
        if workers == 1:
            results = (function(self.out_root, self.seed, items) for function, items, _ in self.jobs)
            for (_, _, label), count in zip(self.jobs, results):
                written[label] += count
            return written
        # Spawned, not forked: the caller has polars' threads, and spawned workers are its children, so
        # their CPU time and memory count in its resource usage.
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            futures = [
                pool.submit(function, self.out_root, self.seed, items) for function, items, _ in self.jobs
            ]
            for (_, _, label), future in zip(self.jobs, futures):
                written[label] += future.result()
        return written


@functools.cache
def _known_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)


def complete_file(path: Path, payload: bytes | str | Callable[[], bytes | str]) -> int:
    """Write ``path`` unless it exists (1 if written, 0 if skipped). ``payload`` may be a function,
    called only when the file is missing, so a resumed run does not render what it will not write."""
    if os.path.exists(path):
        return 0
    _known_folder(path.parent)
    data = payload() if callable(payload) else payload
    partial = f"{path}{PARTIAL}"
    with open(partial, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    os.replace(partial, path)
    return 1


@functools.cache
def pool_of(build: Callable[[int], Sequence], seed: int) -> Sequence:
    """``build(seed)``, once per process: the few rendered images a job's files cycle through."""
    return build(seed)


def write_pooled(
    build_pool: Callable[[int], Sequence[bytes]], out_root: Path, seed: int, items: Sequence[tuple[str, int]]
) -> int:
    """A ``FileJobs`` job (bind ``build_pool`` with ``functools.partial``): each item is (path under
    ``out_root``, index into the pool of encoded files ``build_pool(seed)``), built once per process."""
    pool = pool_of(build_pool, seed)
    return sum(complete_file(out_root / path, pool[index]) for path, index in items)
