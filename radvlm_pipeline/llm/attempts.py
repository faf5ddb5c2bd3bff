"""Asking again with another seed: the loop both LLM stages run when an answer fails the stage's check.

An answer that arrived but fails the check (cut off, not the JSON asked for, a word the report does not
have) is asked for again with seed 1, 2, ... up to ``max_attempts``, then rejected with the reason and
raw text of its last attempt. A call that failed outright is rejected at once: the endpoint layer has
already retried it, and the next run asks again (transient failures are never cached).

Each subject may name the model that answers it (the paper wrote test conversations with a stronger
model than training ones): subjects are sent in one batch of prompts per model and attempt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from radvlm_pipeline.llm.calls import FAILED, LLMResult, PromptItem, UsageStats
from radvlm_pipeline.llm.prompts import PromptTemplate
from radvlm_pipeline.llm.runner import OfflineRule, Runner

Subject = TypeVar("Subject")
DEFAULT_MAX_ATTEMPTS = 3  # answers per input (seeds 0, 1, 2) before a failing one is quarantined


class RejectedAnswer(ValueError):
    """An answer the stage's check refuses: ``reason`` is a short code, ``detail`` a sentence to act on."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Outcome(Generic[Subject]):
    subject: Subject
    result: LLMResult  # of the last attempt
    backend: str  # which backend and model answered (``LLMSettings.backend_label``)
    attempts: int
    value: Any = None  # what the check returned, for an accepted answer
    reason: str | None = None  # for a rejected one
    detail: str | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


@dataclass
class Attempts(Generic[Subject]):
    outcomes: list[Outcome[Subject]]  # in the order of the subjects
    stats: UsageStats = field(default_factory=UsageStats)

    @property
    def valid_at_attempt(self) -> dict[str, int]:
        """How many answers each attempt number produced, for the asset's metadata."""
        counts = Counter(o.attempts for o in self.outcomes if o.accepted)
        return {str(attempt): n for attempt, n in sorted(counts.items())}


def ask_until_valid(
    run: Runner,
    template: PromptTemplate,
    subjects: Sequence[Subject],
    item: Callable[[Subject, int], PromptItem],
    check: Callable[[Subject, LLMResult], Any],
    offline: OfflineRule,
    max_attempts: int,
    model: Callable[[Subject], str | None] = lambda subject: None,
) -> Attempts[Subject]:
    """Ask for every subject's answer (``item(subject, seed)``), ``check`` it (it returns the value to
    keep or raises RejectedAnswer) and ask again with the next seed until it passes or ``max_attempts``
    are spent. ``model(subject)``: the model that answers it; None = the resource's own."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    outcomes: dict[int, Outcome[Subject]] = {}
    stats = UsageStats()
    pending = list(range(len(subjects)))
    for seed in range(max_attempts):
        groups: dict[str | None, list[int]] = {}
        for index in pending:
            groups.setdefault(model(subjects[index]), []).append(index)
        pending = []
        for model_name, indices in groups.items():
            options = {"offline": offline} | ({"model": model_name} if model_name else {})
            prompt_run = run(template, [item(subjects[i], seed) for i in indices], **options)
            stats.add(prompt_run.stats)
            for index, result in zip(indices, prompt_run.results):
                outcome = Outcome(subjects[index], result, prompt_run.backend, seed + 1)
                if result.status == FAILED:
                    reason, detail = f"call_{result.error_kind}", result.error or ""
                    outcomes[index] = replace(outcome, reason=reason, detail=detail)
                    continue
                try:
                    outcomes[index] = replace(outcome, value=check(subjects[index], result))
                except RejectedAnswer as rejected:
                    if seed + 1 < max_attempts:
                        pending.append(index)
                    else:
                        detail = f"{rejected.detail} (after {max_attempts} attempts)"
                        outcomes[index] = replace(outcome, reason=rejected.reason, detail=detail)
        pending.sort()
    return Attempts([outcomes[index] for index in range(len(subjects))], stats)
