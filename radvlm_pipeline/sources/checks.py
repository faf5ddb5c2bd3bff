"""Invariants every source's tables must hold; each returns the problems found (empty = passed).

Plain functions so the Dagster asset checks stay thin and the same checks can run in tests or a notebook.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from radvlm_pipeline.images import DEFAULT_IMAGE_CHECK, ImageCheck, check_images
from radvlm_pipeline.layout import StorageLayout, image_root


def accounting_problems(accounting: pl.DataFrame, quarantine: pl.DataFrame) -> list[str]:
    """Rows in = rows out + rows quarantined, per input file, and the quarantine table agrees."""
    problems = []
    unbalanced = accounting.filter(
        pl.col("rows_in") != pl.col("rows_out") + pl.col("rows_filtered") + pl.col("rows_invalid")
    )
    for file, rows_in, rows_out, filtered, invalid in unbalanced.select(
        "file", "rows_in", "rows_out", "rows_filtered", "rows_invalid"
    ).iter_rows():
        problems.append(
            f"{file}: {rows_in} rows in != {rows_out} out + {filtered} filtered + {invalid} invalid"
        )
    quarantined = quarantine.group_by("file", "kind").len()
    expected = accounting.unpivot(
        index="file", on=["rows_filtered", "rows_invalid"], variable_name="kind", value_name="expected"
    ).with_columns(pl.col("kind").str.strip_prefix("rows_"))
    compared = expected.join(quarantined, on=["file", "kind"], how="full", coalesce=True).with_columns(
        pl.col("expected").fill_null(0), pl.col("len").fill_null(0)
    )
    for file, kind, want, have in (
        compared.filter(pl.col("expected") != pl.col("len"))
        .select("file", "kind", "expected", "len")
        .iter_rows()
    ):
        problems.append(f"{file}: accounting says {want} {kind} rows, quarantine table holds {have}")
    return problems


def box_problems(boxes: pl.DataFrame) -> list[str]:
    """Every box normalised, inside [0, 1], with x1 < x2 and y1 < y2."""
    bad = boxes.filter(
        ~(
            pl.all_horizontal([pl.col(c).is_between(0.0, 1.0) for c in ("x1", "y1", "x2", "y2")])
            & (pl.col("x1") < pl.col("x2"))
            & (pl.col("y1") < pl.col("y2"))
        )
        | pl.any_horizontal([pl.col(c).is_null() for c in ("x1", "y1", "x2", "y2")])
    )
    return [
        f"box {box_id} of image {image_id}: [{x1}, {y1}, {x2}, {y2}]"
        for box_id, image_id, x1, y1, x2, y2 in bad.select(
            "box_id", "image_id", "x1", "y1", "x2", "y2"
        ).iter_rows()
    ]


def image_problems(
    images: pl.DataFrame, data_root: Path, storage_root: Path, level: ImageCheck = DEFAULT_IMAGE_CHECK
) -> list[str]:
    """Every referenced image exists and passes ``level``. Verdicts the readers (or an earlier check) left
    in ``StorageLayout.image_verdicts`` are reused while a file is unchanged: a check right after its
    reader only stats the files."""
    layout = StorageLayout(storage_root)
    problems = []
    for (dataset,), paths in images.filter(pl.col("path").is_not_null()).group_by(
        "dataset", maintain_order=True
    ):
        checked = check_images(
            image_root(dataset, data_root, storage_root),
            paths["path"].to_list(),
            level,
            layout.image_verdicts(dataset),
        )
        problems += checked["image_problem_detail"].drop_nulls().to_list()
    return problems


def split_leak_problems(images: pl.DataFrame) -> list[str]:
    """No patient in two splits: a leak would inflate every test metric."""
    leaks = (
        images.filter(pl.col("subject_id").is_not_null())
        .group_by("subject_id")
        .agg(pl.col("split").unique().sort())
        .filter(pl.col("split").list.len() > 1)
        .sort("subject_id")
    )
    return [f"patient {subject} is in splits {', '.join(splits)}" for subject, splits in leaks.iter_rows()]
