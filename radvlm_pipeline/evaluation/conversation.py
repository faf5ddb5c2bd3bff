"""Conversation evaluation: an LLM judge scores a whole multi-turn exchange from 0 to 10.

The paper (section 4.1.4, appendix figure 2) gives a text-only judge the data the conversation was
written from (abnormalities, report, view, sex, grounded boxes), every user question with its expected
answer and the model's answer, and asks for "Overall score: N" at the end. The prompt below is ours and
follows that scheme; the reference data are the facts the conversation writer was given, carried by the
evaluation row (``reference``). The paper's code silently drops a reply it cannot parse; here such
replies are counted and reported as parse failures, and conversations without reference data too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from radvlm_pipeline.evaluation.metric import MetricUnavailable, MetricValue, TextCompleter

JUDGE_SCORE = "Judge score"
JUDGE_PROMPT_VERSION = "conversation-judge-v2"
# The reference data, as the paper's judge prompt names them, from the row's ``reference`` fields.
REFERENCE_LINES = (
    ("List of abnormalities", "abnormalities"),
    ("Radiology report", "report"),
    ("View", "view"),
    ("Sex", "sex"),
    ("Selected observations with bounding box coordinates", "observations"),
)


@dataclass(frozen=True)
class Round:
    question: str
    expected: str
    generated: str


def judge_prompt(rounds: Sequence[Round], reference: Mapping[str, str | None] | None) -> str:
    lines = [
        "You evaluate a vision-language model that answers a series of questions about one chest X-ray.",
        "For every round you see the user's question, the expected answer (written by someone who had the "
        "reference data listed below) and the model's answer (the model saw only the image).",
        "",
        "Compare each model answer with the expected one for correctness, completeness and relevance, and "
        "note briefly how close it is. Small differences in wording or detail are acceptable. Then give one "
        "overall score from 0 (useless) to 10 (as good as the expected answers) for the whole conversation.",
        "",
        "Reference data:",
        *(
            [f"- {label}: {reference.get(key) or 'not given'}" for label, key in REFERENCE_LINES]
            if reference
            else ["- not recorded for this conversation"]
        ),
        "",
        "Conversation:",
    ]
    for number, round_ in enumerate(rounds, start=1):
        lines += [
            f"Round {number}",
            f"User: {round_.question}",
            f"Expected answer: {round_.expected}",
            f"Generated answer: {round_.generated}",
            "",
        ]
    lines.append("End your reply with one line in exactly this form: Overall score: <integer from 0 to 10>")
    return "\n".join(lines)


_SCORE = re.compile(r"overall\s*score\s*\**\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?", re.IGNORECASE)


def parse_judge_score(text: str | None) -> float | None:
    """The last "Overall score: N" (N/10, bold markers allowed) in a judge reply; None if absent or > 10."""
    if not text:
        return None
    matches = _SCORE.findall(text)
    if not matches:
        return None
    score = float(matches[-1])
    return score if 0.0 <= score <= 10.0 else None


def judge_conversations(
    conversations: Sequence[Sequence[Round]],
    references: Sequence[Mapping[str, str | None] | None],
    datasets: Sequence[str],
    complete: TextCompleter | None,
    unavailable_reason: str,
) -> tuple[MetricValue, np.ndarray | None, list[str | None]]:
    """Mean judge score (0-10) over the conversations whose reply parsed; failures counted separately."""
    if complete is None:
        return MetricValue.not_computed(JUDGE_SCORE, unavailable_reason, unit="/10"), None, []
    prompts = [judge_prompt(rounds, reference) for rounds, reference in zip(conversations, references)]
    try:
        replies = list(complete(prompts, datasets))
    except MetricUnavailable as exc:
        return MetricValue.not_computed(JUDGE_SCORE, str(exc), unit="/10"), None, []
    scores = np.array(
        [score if (score := parse_judge_score(reply)) is not None else np.nan for reply in replies],
        dtype=np.float64,
    )
    failed_calls = sum(reply is None for reply in replies)
    parse_failures = int(np.isnan(scores).sum()) - failed_calls
    scored = scores[~np.isnan(scores)]
    details = dict(
        failed_calls=failed_calls,
        parse_failures=parse_failures,
        without_reference=sum(not reference for reference in references),
        prompt_version=JUDGE_PROMPT_VERSION,
    )
    if len(scored) == 0:
        return (
            MetricValue.not_computed(
                JUDGE_SCORE,
                f"no parseable judge reply ({failed_calls} failed calls, {parse_failures} unparseable)",
                unit="/10",
                **details,
            ),
            scores,
            replies,
        )
    return (
        MetricValue.computed(
            JUDGE_SCORE, float(scored.mean()), unit="/10", scored=int(len(scored)), **details
        ),
        scores,
        replies,
    )
