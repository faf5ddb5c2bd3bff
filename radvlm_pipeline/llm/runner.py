"""``run_prompts``: the one way any stage asks an LLM for answers.

Order of business, the same for every backend:
1. governance: refuse credentialed data the endpoint is not approved for, before anything is sent;
2. offline backend: answer every item with the stage's deterministic rule (nothing cached: it is free
   and exact, and a changed rule must show at once);
3. otherwise look every item up in the durable cache, send only what is missing (directly or through
   the Batch API), and write each answer to the cache the moment it arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from radvlm_pipeline.llm.batches import answer_by_batch
from radvlm_pipeline.llm.cache import ResponseCache
from radvlm_pipeline.llm.calls import (
    FAILED,
    OK,
    LLMResult,
    PendingCall,
    PromptItem,
    PromptRun,
    UsageStats,
    cache_key,
    is_settled,
)
from radvlm_pipeline.llm.endpoint import answer_directly
from radvlm_pipeline.llm.governance import check_endpoint_approval
from radvlm_pipeline.llm.prompts import PromptTemplate
from radvlm_pipeline.llm.settings import OFFLINE, LLMSettings

OfflineRule = Callable[[PromptItem], str]  # the answer text an LLM would give, from the item's context
# What a stage is given to answer its prompts: ``run_prompts`` with the settings and cache bound
# (``LLMResource.run``), called as ``run(template, items, offline=rule)``.
Runner = Callable[..., PromptRun]


def pending_call(settings: LLMSettings, template: PromptTemplate, item: PromptItem) -> PendingCall:
    model = settings.answering_model
    params = settings.request_params(item.seed)
    messages = template.messages(item.fields, item.history, item.images)
    key = cache_key(settings.endpoint_kind, model, template.name, template.version, params, messages)
    images = {image.reference: image.path for image in item.images}
    return PendingCall(
        key, settings.endpoint_kind, model, template.name, template.version, params, messages, images
    )


def run_prompts(
    settings: LLMSettings,
    cache_path: Path,
    template: PromptTemplate,
    items: Sequence[PromptItem],
    offline: OfflineRule | None = None,
) -> PromptRun:
    """Answer every item; results come back in item order, failures included (never raised).

    Raises ``GovernanceError`` before any request when an item's dataset may not go to the endpoint,
    ``EndpointConfigurationError`` when the endpoint rejects the key, the model or the URL (both are
    ``LLMConfigurationError``: no retry can help), and ``BatchPending`` when Batch API batches outlive
    ``batch_max_wait_s`` (they resume on the next call). Failed calls are never cached unless the endpoint
    refused the request itself (``calls.is_settled``), so the next run asks again for the others.
    """
    check_endpoint_approval(settings, {key for item in items for key in item.datasets})
    calls = [pending_call(settings, template, item) for item in items]
    stats = UsageStats()
    if settings.backend == OFFLINE:
        return PromptRun(
            [_offline_result(item, call, offline, stats) for item, call in zip(items, calls)],
            stats,
            settings.backend_label,
        )

    answers: dict[str, LLMResult] = {}
    with ResponseCache(cache_path) as cache:
        for key, hit in cache.get_many(call.key for call in calls).items():
            if is_settled(hit) and (hit.status == OK or not settings.retry_failed):
                answers[key] = replace(hit, origin="cache")
        stats.cache_hits = len(answers)
        todo = list({call.key: call for call in calls if call.key not in answers}.values())

        def record(result: LLMResult, call: PendingCall) -> None:
            if is_settled(result):
                cache.put(result, call)
            stats.record_new(result, call.model)
            answers[call.key] = result

        if todo:
            answer = (
                answer_by_batch(settings, cache, todo, record, stats)
                if settings.use_batch
                else answer_directly(settings, todo, record, stats)
            )
            asyncio.run(answer)
    return PromptRun(
        [replace(answers[call.key], item_id=item.item_id) for item, call in zip(items, calls)],
        stats,
        settings.backend_label,
    )


def _offline_result(
    item: PromptItem, call: PendingCall, offline: OfflineRule | None, stats: UsageStats
) -> LLMResult:
    stats.offline_answers += 1
    if offline is None:
        stats.failures_by_kind["no_offline_rule"] += 1
        return LLMResult(
            item.item_id,
            call.key,
            FAILED,
            None,
            error_kind="no_offline_rule",
            error=f"the offline backend has no rule for prompt '{call.template_name}'",
            origin="offline",
        )
    return LLMResult(item.item_id, call.key, OK, offline(item), finish_reason="stop", origin="offline")
