"""Sending prompts through the OpenAI Batch API: half the price, answers within hours instead of seconds.

Every submission is recorded in the cache before polling, so a run stopped while waiting (killed, or past
``batch_max_wait_s``) resumes the same batches next time instead of paying for them twice.

A finished batch is read line by line and always closed. One unusable line (not JSON, no or an unknown
``custom_id``, a status 200 whose body is no chat completion) must not cost the good answers around it:
the line is kept in the cache's ``batch_bad_lines`` table with its reason, the request it names (if any)
fails as a transient failure, which the next run sends again, and every other answer is recorded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

import openai
from openai.types.chat import ChatCompletion

from radvlm_pipeline.llm.cache import ResponseCache
from radvlm_pipeline.llm.calls import REFUSED, BadLine, LLMResult, PendingCall, UsageStats
from radvlm_pipeline.llm.endpoint import (
    ResultSink,
    configuration_error,
    failure,
    make_client,
    redact,
    request_body,
    result_from_completion,
)
from radvlm_pipeline.llm.settings import LLMSettings

CHAT_PATH = "/v1/chat/completions"  # as the Batch API names it
BATCH_MAX_REQUESTS = 50_000  # the OpenAI Batch API's limit per input file
BATCH_DONE = ("completed", "failed", "expired", "cancelled")
UNUSABLE_LINE = "invalid_response"  # the failure kind of a request whose line was unusable: transient


class BatchPending(RuntimeError):
    """Batches are still running after ``batch_max_wait_s``; they are recorded and resumed next run."""


def status_kind(status_code: int) -> str:
    """The failure kind of an HTTP status reported inside a Batch API result line."""
    if status_code == 429:
        return "rate_limited"
    if status_code >= 500:
        return "server_error"
    return "auth" if status_code in (401, 403) else REFUSED


async def answer_by_batch(
    settings: LLMSettings,
    cache: ResponseCache,
    calls: Sequence[PendingCall],
    on_result: ResultSink,
    stats: UsageStats,
) -> None:
    """Submit what no open batch already covers, then poll every batch that holds a wanted request."""
    try:
        async with make_client(settings) as client:
            waiting = await _submit(client, settings, cache, calls, stats)
            await _collect(client, settings, cache, waiting, on_result, stats)
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise configuration_error(settings, redact(f"{type(exc).__name__}: {exc}", settings)) from None


async def _submit(
    client, settings: LLMSettings, cache: ResponseCache, calls: Sequence[PendingCall], stats: UsageStats
) -> dict[str, list[PendingCall]]:
    """The batches to wait for: open ones holding a wanted request, then new ones for the rest."""
    wanted = {call.key for call in calls}
    waiting = {bid: reqs for bid, reqs in cache.open_batches().items() if wanted & {c.key for c in reqs}}
    covered = {c.key for reqs in waiting.values() for c in reqs}
    fresh = [call for call in calls if call.key not in covered]
    for start in range(0, len(fresh), BATCH_MAX_REQUESTS):
        chunk = fresh[start : start + BATCH_MAX_REQUESTS]
        lines = [
            json.dumps(
                {"custom_id": c.key, "method": "POST", "url": CHAT_PATH, "body": request_body(settings, c)}
            )
            for c in chunk
        ]
        upload = await client.files.create(
            file=("requests.jsonl", "\n".join(lines).encode()), purpose="batch"
        )
        batch = await client.batches.create(
            input_file_id=upload.id, endpoint=CHAT_PATH, completion_window="24h"
        )
        cache.record_batch(batch.id, chunk)
        waiting[batch.id] = chunk
        stats.requests_sent += 2
        stats.batch_requests += len(chunk)
    return waiting


async def _collect(
    client,
    settings: LLMSettings,
    cache: ResponseCache,
    waiting: dict[str, list[PendingCall]],
    on_result: ResultSink,
    stats: UsageStats,
) -> None:
    deadline = time.monotonic() + settings.batch_max_wait_s
    while waiting:
        for batch_id in list(waiting):
            batch = await client.batches.retrieve(batch_id)
            stats.requests_sent += 1
            if batch.status not in BATCH_DONE:
                continue
            files = {}
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    files[file_id] = (await client.files.content(file_id)).text
                    stats.requests_sent += 1
            paired, bad_lines = read_batch_results(batch, files, waiting.pop(batch_id))
            for result, call in paired:
                on_result(result, call)
            cache.record_bad_lines(batch_id, bad_lines)
            stats.batch_bad_lines += len(bad_lines)
            cache.set_batch_status(batch_id, batch.status)
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise BatchPending(
                f"Batch API batches {sorted(waiting)} are still in progress after {settings.batch_max_wait_s:.0f} s. "
                "They are recorded in the LLM cache: materialize again to collect their results without resubmitting."
            )
        await asyncio.sleep(settings.batch_poll_interval_s)


def read_batch_results(
    batch, files: dict[str, str], calls: Sequence[PendingCall]
) -> tuple[list[tuple[LLMResult, PendingCall]], list[BadLine]]:
    """Every request of a finished batch paired with its result, and the lines that could not be used.

    ``files``: the text of the batch's output and error files by file id. A request without a usable
    line fails: with the batch (no line) or as an unusable answer (a line it names that is broken)."""
    by_key = {call.key: call for call in calls}
    records: dict[str, tuple[dict, str, int, str]] = {}
    bad_lines = []
    for file_id, text in files.items():
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                bad_lines.append(BadLine(file_id, number, None, "not_json", str(exc), line))
                continue
            custom_id = record.get("custom_id") if isinstance(record, dict) else None
            if not isinstance(custom_id, str):
                reason, custom_id = "no_custom_id", None
            elif custom_id not in by_key:
                reason = "unknown_custom_id"
            elif custom_id in records:
                reason = "duplicate_custom_id"
            else:
                records[custom_id] = (record, file_id, number, line)
                continue
            bad_lines.append(BadLine(file_id, number, custom_id, reason, reason.replace("_", " "), line))
    paired = []
    for call in calls:
        if call.key not in records:
            detail = f"batch {batch.id} ended '{batch.status}' without a usable result for this request"
            errors = getattr(batch, "errors", None)
            paired.append(
                (failure(call, f"batch_{batch.status}", f"{detail}; errors: {errors}", "batch"), call)
            )
            continue
        record, file_id, number, line = records[call.key]
        result = _line_result(batch.id, call, record)
        if result is None:
            detail = f"status 200 but the body is not a usable chat completion: {line[:300]}"
            bad_lines.append(BadLine(file_id, number, call.key, "unusable_body", detail, line))
            result = failure(
                call, UNUSABLE_LINE, f"batch {batch.id}, {file_id} line {number}: {detail}", "batch"
            )
        paired.append((result, call))
    return paired, bad_lines


def _line_result(batch_id: str, call: PendingCall, record: dict) -> LLMResult | None:
    """The result a line reports for its request; None when its body cannot be read as an answer."""
    response = record.get("response") or {}
    status_code = response.get("status_code")
    if status_code != 200:
        detail = record.get("error") or response.get("body")
        kind = status_kind(status_code) if isinstance(status_code, int) else "batch_error"
        return failure(call, kind, f"batch {batch_id}: status {status_code}: {detail}", "batch")
    try:
        return result_from_completion(
            call, ChatCompletion.model_validate(response.get("body")), None, "batch"
        )
    except (ValueError, AttributeError, IndexError, TypeError):  # pydantic's ValidationError is a ValueError
        return None
