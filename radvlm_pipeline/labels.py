"""The 14 CheXpert observations, parsed from the released value conventions (1.0 / 0.0 / -1.0 / blank)."""

from __future__ import annotations

from enum import Enum

import polars as pl

from radvlm_pipeline.ledger import ROW
from radvlm_pipeline.schema import CHEXPERT_LABELS


class UncertainPolicy(str, Enum):
    """What an uncertain CheXpert label (-1.0) becomes. The paper counts it as absent."""

    ABSENT = "absent"
    PRESENT = "present"
    NOT_MENTIONED = "not_mentioned"


_POSITIVE = {"1", "1.0"}
_NEGATIVE = {"0", "0.0"}
_UNCERTAIN = {"-1", "-1.0"}
_KNOWN = _POSITIVE | _NEGATIVE | _UNCERTAIN


def parse_label_columns(raw: pl.DataFrame, policy: UncertainPolicy) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Convert the 14 string label columns of ``raw`` to nullable booleans.

    Returns (parsed, rejected): ``parsed`` holds every row of ``raw`` whose label values are all known,
    with the label columns replaced; ``rejected`` has ``row``, ``reason``, ``detail`` for the others
    (an unknown value is bad input: quarantined, never guessed).
    """
    missing = [name for name in CHEXPERT_LABELS if name not in raw.columns]
    if missing:
        raise ValueError(f"label columns missing: {missing}")
    uncertain_value = {
        UncertainPolicy.ABSENT: False,
        UncertainPolicy.PRESENT: True,
        UncertainPolicy.NOT_MENTIONED: None,
    }[policy]

    def clean(name: str) -> pl.Expr:
        return pl.col(name).str.strip_chars()

    unknown = [
        pl.when(clean(name).is_not_null() & (clean(name) != "") & ~clean(name).is_in(list(_KNOWN))).then(
            pl.format("{}='{}'", pl.lit(name), pl.col(name))
        )
        for name in CHEXPERT_LABELS
    ]
    checked = raw.with_columns(pl.concat_str(unknown, separator=", ", ignore_nulls=True).alias("_unknown"))
    bad = checked.filter(pl.col("_unknown").is_not_null() & (pl.col("_unknown") != ""))
    rejected = bad.select(
        ROW,
        pl.lit("unknown_label_value").alias("reason"),
        pl.format("unknown label value {}; expected 1.0, 0.0, -1.0 or blank", pl.col("_unknown")).alias(
            "detail"
        ),
    )
    good = checked.filter(pl.col("_unknown").is_null() | (pl.col("_unknown") == "")).drop("_unknown")
    parsed = good.with_columns(
        [
            pl.when(clean(name).is_in(list(_POSITIVE)))
            .then(True)
            .when(clean(name).is_in(list(_NEGATIVE)))
            .then(False)
            .when(clean(name).is_in(list(_UNCERTAIN)))
            .then(pl.lit(uncertain_value, dtype=pl.Boolean))
            .otherwise(pl.lit(None, dtype=pl.Boolean))
            .alias(name)
            for name in CHEXPERT_LABELS
        ]
    )
    return parsed, rejected
