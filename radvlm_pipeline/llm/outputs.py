"""What the LLM stages hand back and write: the output table, the quarantine beside it, usage, a sample.

Quarantine rows keep the model's raw answer, so a person can see why a report or conversation was
rejected (and whether the validation or the model is at fault) without rerunning anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from radvlm_pipeline.layout import StorageLayout
from radvlm_pipeline.llm.calls import LLMResult, UsageStats

LLM_QUARANTINE_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "study_id": pl.String,
        "image_id": pl.String,
        "split": pl.String,
        "reason": pl.String,  # short code: call_timeout, truncated, invalid_json, unknown_box, ...
        "detail": pl.String,  # a sentence a person can act on
        "raw_text": pl.String,  # the model's answer as received (null when the call itself failed)
        "cache_key": pl.String,
        "backend": pl.String,
    }
)

SAMPLE_CELL_CHARS = 600


@dataclass
class StageOutput:
    table: pl.DataFrame
    quarantine: pl.DataFrame
    stats: UsageStats
    facts: dict[str, Any] = field(default_factory=dict)
    sample_markdown: str = ""


def quarantine_row(
    row: Mapping[str, Any], reason: str, result: LLMResult | None, backend: str, detail: str | None = None
) -> dict[str, Any]:
    """``row`` names the input (source, study_id, image_id, split); ``result`` the answer, if any."""
    if detail is None:
        detail = (result.error if result is not None and result.error else None) or reason.replace("_", " ")
    return {
        "source": row.get("source"),
        "study_id": row.get("study_id"),
        "image_id": row.get("image_id"),
        "split": row.get("split"),
        "reason": reason,
        "detail": detail,
        "raw_text": result.text if result is not None else None,
        "cache_key": result.cache_key if result is not None else None,
        "backend": backend,
    }


def quarantine_table(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=LLM_QUARANTINE_SCHEMA, orient="row")


def _cell(text: str) -> str:
    text = text if len(text) <= SAMPLE_CELL_CHARS else text[:SAMPLE_CELL_CHARS] + " …"
    return text.replace("|", "\\|").replace("\n", "<br>")


def sample_markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Inputs and outputs side by side, as a Markdown table for the Dagster UI."""
    if not rows:
        return "_no sample: nothing was answered in this materialization_"
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def write_stage_output(output: StageOutput, layout: StorageLayout, stage: str) -> dict[str, Path]:
    """The stage's table and its quarantine, each written atomically; keyed by file stem."""
    layout.llm_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for target, frame in (
        (layout.llm_output(stage), output.table),
        (layout.llm_quarantine(stage), output.quarantine),
    ):
        partial = target.with_suffix(".parquet.partial")
        frame.write_parquet(partial, compression="zstd", statistics=True)
        partial.replace(target)
        written[target.stem] = target
    return written
