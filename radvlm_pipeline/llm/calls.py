"""What goes into an LLM stage and what comes out: items, results, cache keys and usage accounting.

Everything here is plain data so the stages (prior removal, conversations, the evaluation judge) and the
tests share one vocabulary whatever the backend: a real endpoint, the Batch API or the offline rules.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radvlm_pipeline.llm.images import ImageInput

OK = "ok"
FAILED = "failed"
# The one failure that is the endpoint's verdict on the request itself (a 4xx such as 400: too long,
# filtered): asking again gets the same verdict, so it is cached like an answer. Every other failure (429,
# 5xx, timeouts, broken bodies, a batch that ended without the request) says nothing about the request:
# it is never cached, and the next run asks again.
REFUSED = "bad_request"


@dataclass(frozen=True)
class PromptItem:
    """One prompt to answer.

    ``fields`` fill the template and, through the rendered messages, the cache key. ``context`` holds the
    same facts in structured form for the offline backend; it is never sent and never hashed, so it must
    say nothing the fields do not. ``history`` holds earlier (user, assistant) turns sent verbatim before
    the templated message; ``images`` go into the first user turn.
    """

    item_id: str
    datasets: tuple[str, ...]  # every source dataset whose text or images are in the prompt: governance
    fields: Mapping[str, str]
    seed: int = 0
    context: Any = None
    history: tuple[tuple[str, str], ...] = ()
    images: tuple[ImageInput, ...] = ()


@dataclass(frozen=True)
class LLMResult:
    item_id: str
    cache_key: str
    status: str  # OK or FAILED
    text: str | None
    finish_reason: str | None = None  # "stop", "length" (truncated), ...
    error_kind: str | None = None  # rate_limited, server_error, timeout, connection, invalid_response, ...
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float | None = None
    origin: str = "call"  # "call", "batch", "cache" or "offline"


def is_settled(result: LLMResult) -> bool:
    """Whether a result belongs in the cache: an answer, or the endpoint's refusal of that very request."""
    return result.status == OK or result.error_kind == REFUSED


@dataclass(frozen=True)
class PendingCall:
    """A request not answered yet: everything needed to send it and to file its answer in the cache."""

    key: str
    endpoint_kind: str
    model: str
    template_name: str
    template_version: str
    params: Mapping[str, Any]
    messages: Sequence[Mapping[str, Any]]  # images in them are named by hash (``images.image_part``)
    images: Mapping[str, str] = field(default_factory=dict)  # image reference -> file, read when sent


@dataclass(frozen=True)
class BadLine:
    """A Batch API result line that could not be used, as the cache keeps it (``batches.py``)."""

    file_id: str
    line_number: int  # 1-based, in that file
    custom_id: str | None
    reason: str  # not_json, no_custom_id, unknown_custom_id, duplicate_custom_id, unusable_body
    detail: str
    line: str


def cache_key(
    endpoint_kind: str,
    model: str,
    template_name: str,
    template_version: str,
    params: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]],
) -> str:
    """sha256 over everything that decides an answer; the API key and the base URL are not part of it."""
    payload = {
        "endpoint_kind": endpoint_kind,
        "model": model,
        "template": [template_name, template_version],
        "params": dict(params),
        "messages": list(messages),
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class UsageStats:
    """What a run cost and how it went, for the asset's metadata."""

    requests_sent: int = 0  # HTTP requests, retries included
    answers_recorded: int = 0  # new results written to the cache (ok or failed)
    cache_hits: int = 0
    offline_answers: int = 0
    batch_requests: int = 0  # requests sent through the Batch API
    batch_bad_lines: int = 0  # result lines kept in the cache's batch_bad_lines table
    # Tokens of new answers only (what this run paid for) by (model, "direct" or "batch", "in" or "out"):
    # a stage may use two models (test conversations), each at its own price, the Batch API at a discount.
    tokens: Counter = field(default_factory=Counter)
    retries_by_kind: Counter = field(default_factory=Counter)
    failures_by_kind: Counter = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)

    def add(self, other: UsageStats) -> None:
        """Fold another run's numbers into this one (a stage may run several rounds)."""
        for name in (
            "requests_sent",
            "answers_recorded",
            "cache_hits",
            "offline_answers",
            "batch_requests",
            "batch_bad_lines",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.tokens.update(other.tokens)
        self.retries_by_kind.update(other.retries_by_kind)
        self.failures_by_kind.update(other.failures_by_kind)
        self.latencies_s.extend(other.latencies_s)

    def record_new(self, result: LLMResult, model: str) -> None:
        self.answers_recorded += 1
        channel = "batch" if result.origin == "batch" else "direct"
        self.tokens[(model, channel, "in")] += result.prompt_tokens
        self.tokens[(model, channel, "out")] += result.completion_tokens
        if result.status == FAILED:
            self.failures_by_kind[result.error_kind or "unknown"] += 1
        elif result.latency_s is not None:
            self.latencies_s.append(result.latency_s)

    def token_count(
        self, model: str | None = None, channel: str | None = None, direction: str | None = None
    ) -> int:
        """Tokens of new answers, all of them or those of one model, channel or direction."""
        return sum(
            n
            for (m, c, d), n in self.tokens.items()
            if model in (None, m) and channel in (None, c) and direction in (None, d)
        )

    def estimated_cost_usd(self, prices: Mapping[str, tuple[float, float]], batch_factor: float):
        """(cost, None) or (None, why not): a model missing from the price table is not guessed."""
        cost = 0.0
        for model in sorted({m for (m, _, _), n in self.tokens.items() if n}):
            if model not in prices:
                return None, f"no price for model {model!r} in the price table"
            for channel, factor in (("direct", 1.0), ("batch", batch_factor)):
                for direction, per_million in zip(("in", "out"), prices[model]):
                    cost += factor * self.token_count(model, channel, direction) * per_million / 1e6
        return round(cost, 6), None

    def as_metadata(self, prices: Mapping[str, tuple[float, float]], batch_factor: float) -> dict:
        cost, why_not = self.estimated_cost_usd(prices, batch_factor)
        models = sorted({m for (m, _, _), n in self.tokens.items() if n})
        metadata: dict[str, Any] = {
            "llm_requests_sent": self.requests_sent,
            "llm_answers_recorded": self.answers_recorded,
            "llm_cache_hits": self.cache_hits,
            "llm_offline_answers": self.offline_answers,
            "llm_batch_requests": self.batch_requests,
            "llm_batch_bad_lines": self.batch_bad_lines,
            "llm_tokens_in": self.token_count(direction="in"),
            "llm_tokens_out": self.token_count(direction="out"),
            "llm_tokens_by_model": {
                m: {"in": self.token_count(m, direction="in"), "out": self.token_count(m, direction="out")}
                for m in models
            },
            "llm_estimated_cost_usd": cost if cost is not None else f"not computed: {why_not}",
            "llm_retries_by_kind": dict(sorted(self.retries_by_kind.items())),
            "llm_failures_by_kind": dict(sorted(self.failures_by_kind.items())),
        }
        if self.latencies_s:
            p50, p90, p99 = np.percentile(self.latencies_s, [50, 90, 99])
            metadata |= {
                "llm_latency_p50_s": round(float(p50), 4),
                "llm_latency_p90_s": round(float(p90), 4),
                "llm_latency_p99_s": round(float(p99), 4),
            }
        else:
            metadata["llm_latency"] = "not computed: no new direct calls in this run"
        return metadata


@dataclass
class PromptRun:
    """The results of ``run_prompts`` in the order of the items, with the run's usage and the backend and
    model that answered (``LLMSettings.backend_label``), which the stages write beside each answer."""

    results: list[LLMResult]
    stats: UsageStats
    backend: str
