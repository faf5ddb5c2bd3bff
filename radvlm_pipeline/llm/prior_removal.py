"""Prior-study removal: reports rewritten to describe only what the current image shows.

The model we train sees one image; a report that says "unchanged since yesterday" teaches it to invent
history. The paper had GPT-4o-mini rewrite every MIMIC-CXR and CheXpert-Plus report; we do the same
through ``run_prompts`` with our own prompt (``prompts/prior_removal.md``), and offer sentence rules as
the offline backend. Every input report comes out as exactly one row: ``ok``, ``nothing_left`` (the
model answered "None": the report is excluded from report generation) or ``failed`` (also quarantined
with its reason and raw answer).
"""

from __future__ import annotations

import re

import polars as pl

from radvlm_pipeline.llm.calls import FAILED, LLMResult, PromptItem
from radvlm_pipeline.llm.outputs import StageOutput, quarantine_row, quarantine_table, sample_markdown
from radvlm_pipeline.llm.prompts import load_prompt
from radvlm_pipeline.llm.runner import Runner
from radvlm_pipeline.schema import CLEAN_REPORTS_SCHEMA, REPORTS_SCHEMA

SOURCES = ("mimic_cxr", "chexpert_plus")
PROMPT = load_prompt("prior_removal")

STATUS_OK = "ok"
STATUS_NOTHING_LEFT = "nothing_left"
STATUS_FAILED = "failed"
NOTHING_LEFT = "None"

# Language that only makes sense against an earlier examination.
_COMPARISON = re.compile(
    r"\b(compar\w*|prior|previous\w*|preceding|since|interval\w*|unchanged|no (?:significant |substantial )?change\w*|"
    r"changed?|stable|stably|again|persist\w*|improv\w*|worsen\w*|increas\w*|decreas\w*|resolv\w*|resolution|"
    r"new|newly|redemonstrat\w*|re-demonstrat\w*|recurr\w*|progress\w*|remain\w*|earlier|before|"
    r"(?:slightly |minimally )?(?:larger|smaller|better|worse)|similar|as before)\b",
    re.IGNORECASE,
)
# History, indications, recommendations and communication: not visible on any image.
_NOT_FINDINGS = re.compile(
    r"\b(history|indication|clinical (?:information|question|correlation)|year[- ]old|notif\w*|discussed|"
    r"telephone|phone|called|paged|communicated|recommend\w*|follow[- ]?up|reason for exam)\b|\bdr\.",
    re.IGNORECASE,
)
# A leading or trailing comparison clause that can be cut off while keeping the finding in between.
_LEADING_CLAUSE = re.compile(
    r"^(?:(?:as |when )?(?:compared (?:with|to)|in comparison (?:with|to)|since|relative to|from)\b[^,]*|as before|"
    r"again|as on the prior(?: study)?),\s*",
    re.IGNORECASE,
)
_TRAILING_CLAUSE = re.compile(
    r",?\s*\b(?:as |when )?(?:compared (?:with|to)|in comparison (?:with|to)|since|relative to)\b[^.]*(?=\.?$)",
    re.IGNORECASE,
)
# A comparative modifier in front of a finding ("new effusion", "stable cardiomegaly", "is again seen"):
# the finding stays, the modifier goes.
_COMPARATIVE_MODIFIER = re.compile(
    r"\b(?:new(?:ly)?|persistent(?:ly)?|stable|unchanged|again)\s+"
    r"(?=[a-z])(?!(?:and|or|but|in|at|on|with|since|from|compared|to|when|as|position|appearance|size)\b)",
    re.IGNORECASE,
)
_SECTION_HEADER = re.compile(r"^[A-Z][A-Z /]+:\s*")
_ABBREVIATIONS = re.compile(r"(?:\b(?:dr|mr|mrs|ms|st|vs|approx|e\.g|i\.e)|^\d+)\.$", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """Sentences of a report; a piece ending in an abbreviation or a list number joins the next one."""
    pieces = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    sentences: list[str] = []
    for piece in pieces:
        if sentences and _ABBREVIATIONS.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        elif piece:
            sentences.append(piece)
    return sentences


def mentions_prior(text: str) -> bool:
    return bool(_COMPARISON.search(text))


def _current_part(sentence: str) -> str | None:
    """The sentence without a cuttable comparison clause, or None when it is about change or history."""
    if _NOT_FINDINGS.search(sentence):
        return None
    trimmed = _LEADING_CLAUSE.sub("", _SECTION_HEADER.sub("", sentence))
    trimmed = _COMPARATIVE_MODIFIER.sub("", _TRAILING_CLAUSE.sub("", trimmed)).strip()
    if not trimmed or mentions_prior(trimmed) or len(trimmed.split()) < 2:
        return None
    trimmed = trimmed[0].upper() + trimmed[1:]
    return trimmed if trimmed.endswith((".", "!", "?")) else trimmed + "."


def remove_prior_mentions_by_rules(report: str) -> str:
    """The offline backend: keep sentences free of comparison and history language, cutting a leading or
    trailing comparison clause or a comparative modifier off where the rest still states a finding.
    "None" when nothing is left."""
    kept = [part for part in map(_current_part, split_sentences(report)) if part]
    return " ".join(kept) if kept else NOTHING_LEFT


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
