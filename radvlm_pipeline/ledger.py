"""Row accounting for the readers: every input row ends in an output table or in quarantine.

A reader declares the rows of each input file it reads, then marks each one kept or rejected. When it
is done, ``finish`` refuses to return if any row is unmarked: a row silently lost is a reader bug, and
is reported as one rather than shipped as a smaller table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from radvlm_pipeline.schema import ACCOUNTING_SCHEMA, QUARANTINE_SCHEMA

# The column holding an input row's 1-based record number (the numbering the ledger counts in), added to
# every raw table a reader loads.
ROW = "row"
FILTERED = "filtered"  # removed by a rule of the paper (lateral view, no box...)
INVALID = "invalid"  # bad input (missing file, unknown value, inverted box...)


class LedgerError(RuntimeError):
    """A reader lost track of rows: a bug in the reader, not bad input."""


@dataclass
class _Rejection:
    kind: str
    reason: str
    detail: str


@dataclass
class Ledger:
    source: str
    _rows: dict[str, dict[int, _Rejection | None]] = field(default_factory=dict)
    _declared: dict[str, set[int]] = field(default_factory=dict)

    def expect(self, file: str, rows: Iterable[int]) -> None:
        """Declare the rows (1-based record numbers) an input file holds."""
        self._declared.setdefault(file, set()).update(int(r) for r in rows)
        self._rows.setdefault(file, {})

    def keep(self, file: str, rows: Iterable[int]) -> None:
        marks = self._rows.setdefault(file, {})
        for row in rows:
            marks.setdefault(int(row), None)

    def reject(self, file: str, row: int, kind: str, reason: str, detail: str) -> None:
        """Quarantine a row; the first rejection of a row is the one recorded."""
        if kind not in (FILTERED, INVALID):
            raise ValueError(f"unknown rejection kind {kind!r}")
        marks = self._rows.setdefault(file, {})
        if marks.get(int(row)) is None:
            marks[int(row)] = _Rejection(kind, reason, detail)

    def reject_many(self, file: str, rejections: pl.DataFrame, kind: str) -> None:
        """Quarantine rows given as a frame with columns row, reason, detail."""
        for row, reason, detail in rejections.select("row", "reason", "detail").iter_rows():
            self.reject(file, row, kind, reason, detail)

    def is_rejected(self, file: str, row: int) -> bool:
        return self._rows.get(file, {}).get(int(row)) is not None

    def finish(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Return (quarantine, accounting) tables, or raise if any declared row is unaccounted for."""
        problems = []
        for file, declared in self._declared.items():
            marked = set(self._rows.get(file, {}))
            unmarked = declared - marked
            undeclared = marked - declared
            if unmarked:
                problems.append(f"{file}: rows {sorted(unmarked)[:10]} neither kept nor quarantined")
            if undeclared:
                problems.append(f"{file}: rows {sorted(undeclared)[:10]} marked but never declared")
        undeclared_files = set(self._rows) - set(self._declared)
        if undeclared_files:
            problems.append(f"files marked but never declared: {sorted(undeclared_files)}")
        if problems:
            raise LedgerError(f"{self.source}: " + "; ".join(problems))

        quarantine_rows = []
        accounting_rows = []
        for file in sorted(self._rows):
            marks = self._rows[file]
            counts = {FILTERED: 0, INVALID: 0}
            for row in sorted(marks):
                rejection = marks[row]
                if rejection is None:
                    continue
                counts[rejection.kind] += 1
                quarantine_rows.append(
                    (self.source, file, row, rejection.kind, rejection.reason, rejection.detail)
                )
            rows_out = len(marks) - counts[FILTERED] - counts[INVALID]
            accounting_rows.append(
                (self.source, file, len(marks), rows_out, counts[FILTERED], counts[INVALID])
            )
        quarantine = pl.DataFrame(quarantine_rows, schema=QUARANTINE_SCHEMA, orient="row")
        accounting = pl.DataFrame(accounting_rows, schema=ACCOUNTING_SCHEMA, orient="row")
        return quarantine, accounting
