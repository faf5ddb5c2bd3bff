"""Turning tables into the metadata a data engineer reads in the Dagster UI."""

from __future__ import annotations

import base64
import io

import polars as pl
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema
from PIL import Image

_DAGSTER_TYPES = {
    pl.String: "string",
    pl.Boolean: "bool",
    pl.Int32: "int",
    pl.Int64: "int",
    pl.Float64: "float",
}


def column_schema(schema: pl.Schema) -> TableSchema:
    return TableSchema(
        columns=[TableColumn(name, _DAGSTER_TYPES.get(dtype, str(dtype))) for name, dtype in schema.items()]
    )


def preview(frame: pl.DataFrame, rows: int = 5, max_chars: int = 80) -> MetadataValue:
    """The first rows as a UI table (long strings cut, so a report does not fill the screen)."""
    head = frame.head(rows).with_columns(
        [pl.col(c).str.slice(0, max_chars) for c, t in frame.schema.items() if t == pl.String]
    )
    records = [
        TableRecord(
            {
                k: (v if isinstance(v, (str, int, float, bool)) or v is None else str(v))
                for k, v in row.items()
            }
        )
        for row in head.iter_rows(named=True)
    ]
    return MetadataValue.table(records=records, schema=column_schema(head.schema))


def counts_markdown(frame: pl.DataFrame, by: list[str]) -> MetadataValue:
    """Row counts grouped by some columns, as a Markdown table."""
    counts = frame.group_by(by).len("rows").sort(by)
    header = "| " + " | ".join([*by, "rows"]) + " |\n|" + "---|" * (len(by) + 1) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in counts.iter_rows())
    return MetadataValue.md(header + (body or "| (none) |" + " |" * len(by) + "\n"))


def image_markdown(image: Image.Image, caption: str) -> MetadataValue:
    """An image shown inline in the UI (a data URI in Markdown)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return MetadataValue.md(f"**{caption}**\n\n![{caption}](data:image/png;base64,{encoded})")
