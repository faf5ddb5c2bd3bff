"""Conversation evaluation: an LLM judge scores a whole multi-turn exchange from 0 to 10.

The paper (section 4.1.4, appendix figure 2) gives a text-only judge the data the conversation was
written from, every user question with its expected answer and the model's answer, and asks for
"Overall score: N" at the end. The prompt below is ours and follows that scheme. The paper's code
silently drops a reply it cannot parse; here such replies are counted and reported as parse failures.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from radvlm_pipeline.evaluation.metric import MetricUnavailable, MetricValue, TextCompleter

JUDGE_SCORE = "Judge score"
JUDGE_PROMPT_VERSION = "conversation-judge-v1"


@dataclass(frozen=True)
class Round:
    question: str
    expected: str
    generated: str


def judge_prompt(rounds: Sequence[Round], abnormalities: Sequence[str] | None = None) -> str:
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
        f"- List of abnormalities: {', '.join(abnormalities) if abnormalities else 'not given'}",
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
    abnormalities: Sequence[Sequence[str] | None],
    datasets: Sequence[str],
    complete: TextCompleter | None,
    unavailable_reason: str,
) -> tuple[MetricValue, np.ndarray | None, list[str | None]]:
    """Mean judge score (0-10) over the conversations whose reply parsed; failures counted separately."""
    if complete is None:
        return MetricValue.not_computed(JUDGE_SCORE, unavailable_reason, unit="/10"), None, []
    prompts = [judge_prompt(rounds, labels) for rounds, labels in zip(conversations, abnormalities)]
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
        failed_calls=failed_calls, parse_failures=parse_failures, prompt_version=JUDGE_PROMPT_VERSION
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
