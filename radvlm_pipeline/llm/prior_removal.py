"""Prior-study removal: reports rewritten to describe only what the current image shows.

The model we train sees one image; a report that says "unchanged since yesterday" teaches it to invent
history. The paper had GPT-4o-mini rewrite every MIMIC-CXR and CheXpert-Plus report; we do the same
through ``run_prompts`` with our own prompt (``prompts/prior_removal.md``), and offer sentence rules
(``offline_rules.py``) as the offline backend. Every input report comes out as exactly one row: ``ok``,
``nothing_left`` (the model answered "None": the report is excluded from report generation) or
``failed`` (also quarantined with its reason and raw answer).
"""

from __future__ import annotations

import polars as pl

from radvlm_pipeline.llm.calls import FAILED, LLMResult, PromptItem
from radvlm_pipeline.llm.offline_rules import NOTHING_LEFT, mentions_prior, remove_prior_mentions_by_rules
from radvlm_pipeline.llm.outputs import StageOutput, quarantine_row, quarantine_table, sample_markdown
from radvlm_pipeline.llm.prompts import load_prompt
from radvlm_pipeline.llm.runner import Runner
from radvlm_pipeline.schema import CLEAN_REPORTS_SCHEMA, REPORTS_SCHEMA

SOURCES = ("mimic_cxr", "chexpert_plus")
PROMPT = load_prompt("prior_removal")

STATUS_OK = "ok"
STATUS_NOTHING_LEFT = "nothing_left"
STATUS_FAILED = "failed"


def offline_rule(item: PromptItem) -> str:
    return remove_prior_mentions_by_rules(item.fields["report"])


def _item_id(row: dict) -> str:
    return "/".join([row["source"], row["study_id"] or "", row["image_id"] or ""])


def report_items(reports: pl.DataFrame) -> list[PromptItem]:
    """One item per report that has text to clean (an empty report needs no model to say "None")."""
    return [
        PromptItem(item_id=_item_id(row), datasets=(row["source"],), fields={"report": row["report"].strip()})
        for row in reports.iter_rows(named=True)
        if row["report"] and row["report"].strip()
    ]


def interpret_answer(result: LLMResult) -> tuple[str, str | None, str | None]:
    """(status, cleaned report, quarantine reason) for one answer."""
    if result.status == FAILED:
        return STATUS_FAILED, None, f"call_{result.error_kind}"
    if result.finish_reason == "length":
        return STATUS_FAILED, None, "truncated"
    text = (result.text or "").strip().removeprefix("Answer:").strip()
    if not text:
        return STATUS_FAILED, None, "empty_answer"
    if text.rstrip(".").strip().lower() == NOTHING_LEFT.lower():
        return STATUS_NOTHING_LEFT, None, None
    return STATUS_OK, text, None


def remove_priors(reports: pl.DataFrame, run: Runner, backend: str) -> StageOutput:
    """Clean every report; ``run`` answers prompts (``LLMResource.run``); ``backend`` names it in the rows."""
    reports = reports.select(REPORTS_SCHEMA.names())
    items = report_items(reports)
    prompt_run = run(PROMPT, items, offline=offline_rule)
    by_item = dict(zip((item.item_id for item in items), prompt_run.results))
    rows, quarantine, samples = [], [], []
    for row in reports.iter_rows(named=True):
        result = by_item.get(_item_id(row))
        if result is None:  # no text in the source: nothing to clean
            status, clean, reason, key = STATUS_NOTHING_LEFT, None, None, None
        else:
            status, clean, reason = interpret_answer(result)
            key = result.cache_key
        rows.append(
            {
                **{k: row[k] for k in ("source", "study_id", "subject_id", "image_id", "split", "report")},
                "report_clean": clean,
                "status": status,
                "cache_key": key,
                "backend": backend,
            }
        )
        if reason:
            quarantine.append(quarantine_row(row, reason, result, backend))
        if result is not None and len(samples) < 5 and status != STATUS_FAILED:
            samples.append((row["report"], clean or NOTHING_LEFT))
    table = pl.DataFrame(rows, schema=CLEAN_REPORTS_SCHEMA, orient="row")
    residual = (
        int(
            table.filter(pl.col("report_clean").is_not_null())["report_clean"]
            .map_elements(mentions_prior, return_dtype=pl.Boolean)
            .sum()
            or 0
        )
        if table.height
        else 0
    )
    facts = {
        "reports_in": reports.height,
        "reports_ok": int((table["status"] == STATUS_OK).sum()),
        "reports_nothing_left": int((table["status"] == STATUS_NOTHING_LEFT).sum()),
        "reports_failed": int((table["status"] == STATUS_FAILED).sum()),
        # A quality signal, not an error: cleaned reports that still use comparison words ("stable", "new"...).
        "cleaned_with_comparison_words": residual,
    }
    return StageOutput(
        table,
        quarantine_table(quarantine),
        prompt_run.stats,
        facts,
        sample_markdown(("report", "without priors"), samples),
    )
