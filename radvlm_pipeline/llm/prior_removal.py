"""Prior-study removal: reports rewritten to describe only what the current image shows.

The model we train sees one image; a report that says "unchanged since yesterday" teaches it to invent
history. The paper had GPT-4o-mini rewrite every MIMIC-CXR and CheXpert-Plus report; we do the same
through ``run_prompts`` with our own prompt (``prompts/prior_removal.md``), and offer sentence rules
(``offline_rules.py``) as the offline backend. Every answer must pass ``prior_removal_checks``: the
report with parts deleted, ending where a sentence ends. Every input report comes out as exactly one row:
``ok``, ``nothing_left`` (the model answered "None": the report is excluded from report generation) or
``failed`` (also quarantined with its reason and raw answer).
"""

from __future__ import annotations

import polars as pl

from radvlm_pipeline.llm.attempts import DEFAULT_MAX_ATTEMPTS, ask_until_valid
from radvlm_pipeline.llm.calls import LLMResult, PromptItem
from radvlm_pipeline.llm.offline_rules import NOTHING_LEFT, mentions_prior, remove_prior_mentions_by_rules
from radvlm_pipeline.llm.outputs import StageOutput, quarantine_row, quarantine_table, sample_markdown
from radvlm_pipeline.llm.prior_removal_checks import check_answer
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


def _has_text(row: dict) -> bool:
    return bool(row["report"] and row["report"].strip())


def _item(row: dict, seed: int = 0) -> PromptItem:
    return PromptItem(_item_id(row), (row["source"],), {"report": row["report"].strip()}, seed=seed)


def report_items(reports: pl.DataFrame) -> list[PromptItem]:
    """One item per report that has text to clean (an empty report needs no model to say "None")."""
    return [_item(row) for row in reports.iter_rows(named=True) if _has_text(row)]


def _checked(row: dict, result: LLMResult) -> str:
    return check_answer(row["report"].strip(), result)


def remove_priors(
    reports: pl.DataFrame, run: Runner, backend: str, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> StageOutput:
    """Clean every report; ``run`` answers prompts (``LLMResource.run``); ``backend`` names it in the rows
    no prompt was needed for. An answer that fails ``check_answer`` is asked again with the next seed, up
    to ``max_attempts``, then quarantined with its reason."""
    reports = reports.select(REPORTS_SCHEMA.names())
    subjects = [row for row in reports.iter_rows(named=True) if _has_text(row)]
    attempts = ask_until_valid(run, PROMPT, subjects, _item, _checked, offline_rule, max_attempts)
    outcome_of = {_item_id(outcome.subject): outcome for outcome in attempts.outcomes}
    rows, quarantine, samples = [], [], []
    for row in reports.iter_rows(named=True):
        outcome = outcome_of.get(_item_id(row)) if _has_text(row) else None
        if outcome is None:  # no text in the source: nothing to clean
            status, clean, key, answered_by = STATUS_NOTHING_LEFT, None, None, backend
        else:
            key, answered_by = outcome.result.cache_key, outcome.backend
            if not outcome.accepted:
                status, clean = STATUS_FAILED, None
                quarantine.append(
                    quarantine_row(row, outcome.reason, outcome.result, answered_by, outcome.detail)
                )
            elif outcome.value == NOTHING_LEFT:
                status, clean = STATUS_NOTHING_LEFT, None
            else:
                status, clean = STATUS_OK, outcome.value
        rows.append(
            {
                **{k: row[k] for k in ("source", "study_id", "subject_id", "image_id", "split", "report")},
                "report_clean": clean,
                "status": status,
                "cache_key": key,
                "backend": answered_by,
            }
        )
        if outcome is not None and len(samples) < 5 and status != STATUS_FAILED:
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
        "valid_at_attempt": attempts.valid_at_attempt,
        # A quality signal, not an error: cleaned reports that still use comparison words ("stable", "new"...).
        "cleaned_with_comparison_words": residual,
    }
    return StageOutput(
        table,
        quarantine_table(quarantine),
        attempts.stats,
        facts,
        sample_markdown(("report", "without priors"), samples),
    )
