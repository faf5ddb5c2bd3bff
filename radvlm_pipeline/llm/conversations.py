"""Conversation synthesis: multi-turn user/assistant dialogues about one image, written from its facts.

Standard conversations come from MIMIC-CXR (cleaned report, CheXpert labels, view, sex); grounded ones
from MS-CXR and PadChest-GR, whose phrase boxes are given to the writer so the assistant can answer
"where is it?" with coordinates. The writer is an LLM (``prompts/conversation.md``) or, offline, a
deterministic composer over the same facts (``offline_rules.py``).

Standard conversations are capped per split before any request (``ConversationPlan``; the paper has
80,312 training and 523 test ones, not one per MIMIC-CXR study), and the test split, which the
evaluation rests on, may be written by its own, stronger model (the paper: GPT-4o instead of GPT-4o-mini).

Whoever wrote it, an answer must pass ``parse_conversation`` (``conversation_validation.py``). A failing
answer is asked for again with another seed, a bounded number of times (``attempts.py``), then
quarantined with its reason and raw text. Every input (a MIMIC-CXR report, a grounded image) ends as a
conversation, a quarantine row, or counted as left out by the cap; the facts come from the source tables
through ``conversation_facts.py``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from radvlm_pipeline.llm.attempts import DEFAULT_MAX_ATTEMPTS, Attempts, ask_until_valid
from radvlm_pipeline.llm.calls import LLMResult, PromptItem
from radvlm_pipeline.llm.conversation_facts import grounded_facts, standard_facts
from radvlm_pipeline.llm.conversation_validation import parse_conversation
from radvlm_pipeline.llm.conversation_vocabulary import (
    GROUNDED,
    GROUNDED_SOURCES,
    SHARED_STUDIES,
    STANDARD,
    STANDARD_SOURCE,
    ImageFacts,
)
from radvlm_pipeline.llm.offline_rules import compose_conversation
from radvlm_pipeline.llm.outputs import StageOutput, quarantine_row, quarantine_table, sample_markdown
from radvlm_pipeline.llm.prompts import load_prompt
from radvlm_pipeline.llm.runner import Runner
from radvlm_pipeline.schema import CONVERSATIONS_SCHEMA

PROMPT = load_prompt("conversation")
TEST_SPLIT = "test"
# Table 1 of the paper: standard (MIMIC-CXR) conversations per split. A split not named is not capped.
PAPER_STANDARD_CAPS = {"train": 80_312, "test": 523}


@dataclass(frozen=True)
class ConversationPlan:
    """How many conversations to ask for, and from which model."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    standard_caps: Mapping[str, int] = field(default_factory=lambda: dict(PAPER_STANDARD_CAPS))
    cap_seed: int = 0  # another seed draws another subset
    test_model: str | None = None  # writes the test split; None: the LLM resource's own model


def offline_rule(item: PromptItem) -> str:
    return compose_conversation(item.context, item.seed)


def _checked(fact: ImageFacts, result: LLMResult) -> list[dict]:
    return parse_conversation(result.text, result.finish_reason, fact.allowed_boxes(), fact.kind == GROUNDED)


def _cap_rank(seed: int, fact: ImageFacts) -> bytes:
    return hashlib.blake2b(f"{seed}\x1f{fact.item_id}".encode(), digest_size=16).digest()


def within_caps(
    facts: Sequence[ImageFacts], caps: Mapping[str, int], seed: int
) -> tuple[list[ImageFacts], dict[str, int]]:
    """The facts to ask for: per split named in ``caps``, the ``caps[split]`` whose hash of (seed, image)
    ranks lowest. Fixed before any request, independent of input order, and a new study moves the choice
    only at its margin. Also returns how many each split left out (counted in metadata, not quarantined:
    nothing is wrong with them)."""
    by_split: dict[str, list[ImageFacts]] = {}
    for fact in facts:
        by_split.setdefault(fact.split, []).append(fact)
    chosen, left_out = set(), {}
    for split, group in sorted(by_split.items()):
        cap = caps.get(split)
        kept = group if cap is None else sorted(group, key=lambda fact: _cap_rank(seed, fact))[:cap]
        chosen.update(fact.item_id for fact in kept)
        if len(group) > len(kept):
            left_out[split] = len(group) - len(kept)
    return [fact for fact in facts if fact.item_id in chosen], left_out


def synthesise(
    facts: Sequence[ImageFacts], run: Runner, plan: ConversationPlan = ConversationPlan()
) -> tuple[list[dict], list[dict], Attempts[ImageFacts]]:
    """Ask for every conversation; re-ask the invalid ones with seed 1, 2, ... up to ``max_attempts``.

    Returns (conversation rows, quarantine rows, the attempts with their usage). A call that failed
    outright is quarantined at once: another seed would not help it."""

    def model(fact: ImageFacts) -> str | None:
        return plan.test_model if fact.split == TEST_SPLIT else None

    attempts = ask_until_valid(
        run, PROMPT, facts, ImageFacts.item, _checked, offline_rule, plan.max_attempts, model
    )
    rows, quarantine = [], []
    for outcome in attempts.outcomes:
        fact = outcome.subject
        row = {
            "source": fact.source,
            "study_id": fact.study_id,
            "image_id": fact.image_id,
            "split": fact.split,
        }
        if not outcome.accepted:
            quarantine.append(
                quarantine_row(row, outcome.reason, outcome.result, outcome.backend, outcome.detail)
            )
            continue
        rows.append(
            {
                **row,
                "kind": fact.kind,
                "conversation": outcome.value,
                "facts": fact.fields(),
                "cache_key": outcome.result.cache_key,
                "backend": outcome.backend,
            }
        )
    return rows, quarantine, attempts


def _sample_cells(fact: ImageFacts, conversation: list[dict]) -> tuple[str, str]:
    facts_text = "\n".join(f"{name}: {value}" for name, value in fact.fields().items())
    dialogue = "\n".join(f"**{turn['from']}**: {turn['value']}" for turn in conversation[:6])
    return facts_text, dialogue


def build_conversations(
    source_tables: Mapping[str, Mapping[str, pl.DataFrame]],
    clean_reports: pl.DataFrame,
    run: Runner,
    backend: str,
    plan: ConversationPlan = ConversationPlan(),
) -> StageOutput:
    """Standard and grounded conversations for every split, standard ones within ``plan``'s caps.
    ``source_tables[source][table]`` holds the canonical tables of ``mimic_cxr`` and of whichever grounded
    sources are present."""
    mimic = source_tables[STANDARD_SOURCE]
    standard, quarantine = standard_facts(clean_reports, mimic["images"], mimic["labels"], backend)
    facts, left_out = within_caps(standard, plan.standard_caps, plan.cap_seed)
    mimic_clean = clean_reports.filter(pl.col("source") == STANDARD_SOURCE)
    for source in GROUNDED_SOURCES:
        if source not in source_tables:
            continue
        shared = SHARED_STUDIES.get(source)
        found, rejected = grounded_facts(
            source,
            source_tables[source],
            mimic_clean if shared else None,
            mimic["labels"] if shared else None,
            backend,
        )
        facts += found
        quarantine += rejected
    inputs = len(facts) + len(quarantine) + sum(left_out.values())
    rows, failed, attempts = synthesise(facts, run, plan)
    quarantine += failed
    order = ["source", "study_id", "image_id"]  # one order whatever attempt each conversation needed
    table = pl.DataFrame(rows, schema=CONVERSATIONS_SCHEMA, orient="row").sort(order, nulls_last=True)
    quarantine_frame = quarantine_table(quarantine).sort(order, nulls_last=True)
    by_id = {f.item_id: f for f in facts}
    samples = []
    for kind in (STANDARD, GROUNDED):  # a few of each kind side by side with their facts
        for row in [r for r in rows if r["kind"] == kind][:3]:
            samples.append(_sample_cells(by_id[f"{row['source']}/{row['image_id']}"], row["conversation"]))
    counts = Counter((r["kind"], r["split"]) for r in rows)
    backends = {(r["split"], r["backend"]) for r in rows}
    summary = {
        "inputs": inputs,
        "conversations": {f"{kind}/{split}": n for (kind, split), n in sorted(counts.items())},
        "standard_caps": dict(sorted(plan.standard_caps.items())),
        "standard_left_out_by_cap": left_out,
        "backend_by_split": {
            split: sorted(b for s, b in backends if s == split) for split, _ in sorted(backends)
        },
        "quarantined_by_reason": dict(sorted(Counter(q["reason"] for q in quarantine).items())),
        "valid_at_attempt": attempts.valid_at_attempt,
        "mean_rounds": round(sum(len(r["conversation"]) for r in rows) / (2 * len(rows)), 2) if rows else 0.0,
    }
    return StageOutput(
        table,
        quarantine_frame,
        attempts.stats,
        summary,
        sample_markdown(("facts given", "conversation (first 3 rounds)"), samples),
    )
