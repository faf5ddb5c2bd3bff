"""Markdown tables, as the Dagster UI's metadata, the results file and the benchmarks show them."""

from __future__ import annotations

from collections.abc import Iterable


def markdown_row(cells: Iterable[object]) -> str:
    """One line of a table. Public for output that prints a table row by row, as each row is measured.
    An empty cell is written ``| |``, as in a hand-written table."""
    return "|" + "".join(f" {text} |" if text else " |" for text in map(str, cells))


def markdown_table(header: Iterable[object], rows: Iterable[Iterable[object]]) -> str:
    """The header, its separator and one line per row, without a final newline."""
    header = list(header)
    return "\n".join([markdown_row(header), "|" + "---|" * len(header), *map(markdown_row, rows)])
