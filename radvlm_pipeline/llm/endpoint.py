"""Sending prompts to an OpenAI-compatible endpoint, one request each (the Batch API: ``batches.py``).

Direct calls run on the SDK's async client, ``concurrency`` at a time, under optional requests- and
tokens-per-minute limits (aiolimiter). Retries are ours, not the SDK's (it is built with
``max_retries=0``): we count every retry by kind for the asset's metadata, derive the jitter from the
cache key so a rerun waits the same way, bound the backoff by configuration, and turn a call that keeps
failing into a recorded failure instead of an exception that would lose the rest of the run.

Every finished call is handed to ``on_result`` at once; the caller writes it to the cache, which is
what makes a killed run resumable.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import openai
from aiolimiter import AsyncLimiter
from openai.types.chat import ChatCompletion

from radvlm_pipeline.llm.calls import FAILED, OK, REFUSED, LLMResult, PendingCall, UsageStats
from radvlm_pipeline.llm.images import resolve_images, text_characters
from radvlm_pipeline.llm.settings import AZURE, LLMConfigurationError, LLMSettings

ResultSink = Callable[[LLMResult, PendingCall], None]

# Direct calls go through the client's documented raw-request method, not the typed
# ``chat.completions.create``: that spends about a third of the client's CPU re-encoding parameters that
# are already plain JSON. Auth, base URL, Azure deployment routing and response parsing are the same.
CHAT_ROUTE = "/chat/completions"
RETRYABLE = ("rate_limited", "server_error", "timeout", "connection", "invalid_response")
# The endpoint refuses our key or does not know the model or URL: every other request would fail the same
# way, so the run stops (EndpointConfigurationError) instead of recording one failure per item.
CONFIGURATION = ("auth", "not_found")
# What a call may raise that is the endpoint's doing: the SDK's errors, an unparseable body (ValueError) or
# a body that is not a chat completion (attribute/index/type errors). Anything else is our bug and raises.
CALL_ERRORS = (openai.APIError, ValueError, AttributeError, IndexError, TypeError)


class EndpointConfigurationError(LLMConfigurationError):
    """The endpoint rejected the credentials, the model or the URL (HTTP 401, 403, 404)."""


def configuration_error(settings: LLMSettings, error: str) -> EndpointConfigurationError:
    return EndpointConfigurationError(
        f"the endpoint {settings.base_url or '(SDK default URL)'} rejected the request for model "
        f"{settings.model!r}: {error}. Check the LLM resource's API key, model and base URL."
    )


def make_client(settings: LLMSettings) -> openai.AsyncOpenAI:
    """The SDK's async client on its aiohttp transport, which the SDK recommends for high concurrency:
    here it halved the client's CPU per request and doubled throughput at 64 requests in flight."""
    common = {
        "api_key": settings.api_key or "no-key",
        "timeout": settings.timeout_s,
        "max_retries": 0,
        "http_client": openai.DefaultAioHttpClient(timeout=settings.timeout_s),
    }
    if settings.backend == AZURE:
        return openai.AsyncAzureOpenAI(
            azure_endpoint=settings.base_url, api_version=settings.azure_api_version, **common
        )
    return openai.AsyncOpenAI(base_url=settings.base_url, **common)


def request_body(settings: LLMSettings, call: PendingCall) -> dict:
    messages = (
        resolve_images(call.messages, call.images, settings.image_transport) if call.images else call.messages
    )
    return {"model": settings.model, "messages": list(messages), **call.params}


def retry_after_seconds(headers) -> float | None:
    """The wait a 429/5xx response asks for: ``retry-after-ms``, else ``retry-after`` in seconds or as a date."""
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def classify_error(exc: Exception) -> tuple[str, float | None]:
    """(failure kind, server-requested wait) for an exception raised by a chat completion call."""
    if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError: test it first
        return "timeout", None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", None
    if isinstance(exc, openai.APIStatusError):
        wait = retry_after_seconds(exc.response.headers)
        if exc.status_code == 429:
            return "rate_limited", wait
        if exc.status_code >= 500 or exc.status_code == 408:
            return "server_error", wait
        if exc.status_code in (401, 403):
            return "auth", None
        if exc.status_code == 404:
            return "not_found", None
        return REFUSED, None
    return "invalid_response", None  # unparseable body, missing fields: often transient behind proxies


def backoff_seconds(settings: LLMSettings, key: str, attempt: int) -> float:
    """Exponential backoff with 'equal jitter', seeded by the request so reruns behave the same."""
    ceiling = min(settings.backoff_max_s, settings.backoff_base_s * 2**attempt)
    return ceiling * random.Random(f"{key}:{attempt}").uniform(0.5, 1.0)


def redact(text: str, settings: LLMSettings) -> str:
    return text.replace(settings.api_key, "***") if settings.api_key else text


def _estimated_tokens(settings: LLMSettings, call: PendingCall) -> float:
    """What a request counts against a tokens-per-minute limit: ~4 characters a token, plus max_tokens,
    which is how OpenAI itself counts a request before it runs."""
    return text_characters(call.messages) / 4 + settings.max_tokens


def result_from_completion(call: PendingCall, completion, latency_s: float | None, origin: str) -> LLMResult:
    """Raises AttributeError/IndexError/TypeError on a body that is not a chat completion."""
    choice = completion.choices[0]
    usage = completion.usage
    return LLMResult(
        item_id="",
        cache_key=call.key,
        status=OK,
        text=choice.message.content,
        finish_reason=choice.finish_reason,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        latency_s=latency_s,
        origin=origin,
    )


def failure(call: PendingCall, kind: str, error: str, origin: str) -> LLMResult:
    return LLMResult(
        item_id="", cache_key=call.key, status=FAILED, text=None, error_kind=kind, error=error, origin=origin
    )


class _Limits:
    def __init__(self, settings: LLMSettings):
        self.requests = (
            AsyncLimiter(settings.requests_per_minute, 60) if settings.requests_per_minute else None
        )
        self.tokens = AsyncLimiter(settings.tokens_per_minute, 60) if settings.tokens_per_minute else None

    async def acquire(self, tokens: float) -> None:
        if self.requests:
            await self.requests.acquire()
        if self.tokens:
            await self.tokens.acquire(min(tokens, self.tokens.max_rate))


async def _answer_one(
    client, settings: LLMSettings, call: PendingCall, limits: _Limits, stats: UsageStats
) -> LLMResult:
    attempt = 0
    # Built once, outside the retries: an image that cannot be read is our fault, not the endpoint's.
    body = request_body(settings, call)
    while True:
        await limits.acquire(_estimated_tokens(settings, call))
        stats.requests_sent += 1
        started = time.monotonic()
        try:
            completion = await client.post(CHAT_ROUTE, body=body, cast_to=ChatCompletion)
            return result_from_completion(call, completion, time.monotonic() - started, "call")
        except CALL_ERRORS as exc:
            kind, wait = classify_error(exc)
            error = redact(f"{type(exc).__name__}: {exc}", settings)
        if kind in CONFIGURATION:
            raise configuration_error(settings, error)
        if kind not in RETRYABLE or attempt >= settings.max_retries:
            return failure(call, kind, f"{error} (after {attempt + 1} attempts)", "call")
        if wait is None:
            wait = backoff_seconds(settings, call.key, attempt)
        elif wait > settings.max_retry_wait_s:
            return failure(
                call,
                kind,
                f"{error}; the server asked to wait {wait:.0f} s, more than "
                f"max_retry_wait_s={settings.max_retry_wait_s:.0f}",
                "call",
            )
        stats.retries_by_kind[kind] += 1
        await asyncio.sleep(wait)
        attempt += 1


async def answer_directly(
    settings: LLMSettings, calls: Sequence[PendingCall], on_result: ResultSink, stats: UsageStats
) -> None:
    queue = deque(calls)
    limits = _Limits(settings)

    async def worker(client) -> None:
        while queue:
            call = queue.popleft()
            on_result(await _answer_one(client, settings, call, limits, stats), call)

    async with make_client(settings) as client:
        await asyncio.gather(*(worker(client) for _ in range(min(settings.concurrency, len(queue)))))
