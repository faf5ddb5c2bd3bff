"""Quarantine rules applied to a whole table at once.

A reader lists its rules in order, each a polars condition with a reason code and a detail sentence;
the first rule a row breaks decides why it is quarantined. The reader stays vectorised (one pass per
list of rules, not a Python loop per row) and its rules read as one list a person can review.
Frames handed to these functions carry ``file`` (relative to the dataset root) and ``row`` columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from radvlm_pipeline.ledger import INVALID, ROW, Ledger

FILE = "file"


@dataclass(frozen=True)
class Rule:
    kind: str  # ledger.FILTERED (a rule of the paper) or ledger.INVALID (bad input)
    reason: str | pl.Expr  # a code, or an expression giving each row's code
    when: pl.Expr  # true where a row breaks the rule; null counts as false
    detail: pl.Expr  # a sentence naming the offending value


def screen(ledger: Ledger, frame: pl.DataFrame, rules: Sequence[Rule]) -> pl.DataFrame:
    """Quarantine the rows that break a rule, with the first rule each breaks; return the other rows."""
    if frame.is_empty() or not rules:
        return frame
    first, *rest = rules
    rule_index = pl.when(first.when.fill_null(False)).then(pl.lit(0, dtype=pl.UInt32))
    for index, rule in enumerate(rest, start=1):
        rule_index = rule_index.when(rule.when.fill_null(False)).then(pl.lit(index, dtype=pl.UInt32))
    judged = frame.with_columns(_rule=rule_index.otherwise(pl.lit(None, dtype=pl.UInt32)))
    broken = set(judged["_rule"].drop_nulls().unique().to_list())
    # Reasons and details are computed per rule that some row broke, on the whole frame (a detail may
    # look at other rows, as a duplicate's does) but never for a rule nothing broke: formatting a detail
    # for each of millions of good rows (7M Chest ImaGenome boxes) would cost gigabytes for nothing.
    for index, rule in enumerate(rules):
        if index not in broken:
            continue
        reason = pl.lit(rule.reason) if isinstance(rule.reason, str) else rule.reason
        rejected = judged.with_columns(_reason=reason, _detail=rule.detail).filter(pl.col("_rule") == index)
        for file, row, reason_text, detail in rejected.select(FILE, ROW, "_reason", "_detail").iter_rows():
            ledger.reject(file, row, rule.kind, reason_text, detail)
    return judged.filter(pl.col("_rule").is_null()).drop("_rule")


def declare(ledger: Ledger, frame: pl.DataFrame) -> None:
    """Tell the ledger every row of every file in ``frame`` (before any rule drops one)."""
    for file, rows in frame.group_by(FILE, maintain_order=True).agg(ROW).iter_rows():
        ledger.expect(file, rows)


def keep(ledger: Ledger, frame: pl.DataFrame) -> None:
    for file, rows in frame.group_by(FILE, maintain_order=True).agg(ROW).iter_rows():
        ledger.keep(file, rows)


def blank(column: str) -> pl.Expr:
    return pl.col(column).is_null() | (pl.col(column).cast(pl.String).str.strip_chars() == "")


def missing_values(columns: Sequence[str]) -> Rule:
    """A row lacking a value the reader cannot do without."""
    named = pl.concat_str(
        [pl.when(blank(c)).then(pl.lit(c)) for c in columns], separator=", ", ignore_nulls=True
    )
    return Rule(
        INVALID,
        "missing_value",
        pl.any_horizontal([blank(c) for c in columns]),
        pl.format("{} is blank", named),
    )


def duplicates(keys: Sequence[str]) -> Rule:
    """A row repeating an earlier row's key (in frame order): the first goes on, the others are quarantined.
    Screen it on its own, after the rules that drop rows, so a row never counts as repeating a dropped one."""
    key = pl.concat_str(
        [pl.format("{}={}", pl.lit(k), pl.col(k).fill_null("")) for k in keys], separator=", "
    )
    first_file = pl.col(FILE).first().over(keys)
    first_row = pl.col(ROW).first().over(keys)
    return Rule(
        INVALID,
        "duplicate_row",
        ~pl.struct(keys).is_first_distinct(),
        pl.format("{} repeats {} row {}", key, first_file, first_row),
    )


def invalid_boxes() -> Rule:
    """The verdict of ``boxes.normalise_pixel_boxes`` (missing size or coordinate, inverted, wholly outside)."""
    return Rule(
        INVALID, pl.col("invalid_reason"), pl.col("invalid_reason").is_not_null(), pl.col("invalid_detail")
    )
