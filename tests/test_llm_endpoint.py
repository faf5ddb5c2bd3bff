"""``run_prompts`` against a real HTTP server through the real ``openai`` SDK: retries, limits, cache, batches."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace

import polars as pl
import pytest
from aiolimiter import AsyncLimiter
from fake_openai_server import FakeOpenAI
from llm_tables import SOURCE_TABLES, all_reports, many_reports

from radvlm_pipeline.llm import LLMConfigurationError, LLMSettings, conversations, prior_removal, run_prompts
from radvlm_pipeline.llm.batches import BatchPending
from radvlm_pipeline.llm.cache import ResponseCache
from radvlm_pipeline.llm.calls import LLMResult
from radvlm_pipeline.llm.endpoint import EndpointConfigurationError, backoff_seconds, retry_after_seconds
from radvlm_pipeline.llm.runner import pending_call

KEY = "sk-test-do-not-leak-0123456789"
APPROVED = ("mimic_cxr", "chexpert_plus", "ms_cxr", "padchest_gr")


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def offline_run(template, items, offline=None):
    return run_prompts(LLMSettings(), None, template, items, offline)


def settings_for(server: FakeOpenAI, **overrides) -> LLMSettings:
    values = dict(
        backend="openai",
        base_url=server.base_url,
        api_key=KEY,
        model="gpt-4o-mini",
        concurrency=4,
        timeout_s=2.0,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        approved_credentialed_datasets=APPROVED,
        batch_poll_interval_s=0.01,
    )
    return LLMSettings(**(values | overrides))


def clean(settings, cache_path, reports=None):
    items = prior_removal.report_items(all_reports() if reports is None else reports)
    return items, run_prompts(settings, cache_path, prior_removal.PROMPT, items, prior_removal.offline_rule)


def test_answers_are_cached_and_a_rerun_sends_nothing(server, tmp_path):
    settings = settings_for(server)
    items, first = clean(settings, tmp_path / "cache.sqlite")
    assert [r.status for r in first.results] == ["ok"] * len(items)
    assert first.stats.requests_sent == first.stats.answers_recorded == len(items)
    assert first.stats.token_count(direction="in") > 0 and len(first.stats.latencies_s) == len(items)
    assert {r.authorization for r in server.chat_requests} == {f"Bearer {KEY}"}

    _, second = clean(settings, tmp_path / "cache.sqlite")
    assert len(server.chat_requests) == len(items)
    assert second.stats.requests_sent == 0 and second.stats.cache_hits == len(items)
    assert [r.text for r in second.results] == [r.text for r in first.results]
    assert {r.origin for r in second.results} == {"cache"}
    assert KEY.encode() not in (tmp_path / "cache.sqlite").read_bytes()


def test_retry_after_is_honoured_and_transient_faults_are_retried(server, tmp_path):
    server.retry_after_s = 0.3
    server.script(["429", "500", "timeout", "malformed_body"])
    server.timeout_sleep_s = 1.0
    settings = settings_for(server, concurrency=1, timeout_s=0.3)
    items, run = clean(settings, tmp_path / "cache.sqlite", all_reports().head(1))
    assert run.results[0].status == "ok"
    first, second = server.chat_requests[:2]
    assert second.started - first.started >= 0.3  # the server asked for 300 ms; our own backoff is ~10 ms
    assert run.stats.retries_by_kind == {
        "rate_limited": 1,
        "server_error": 1,
        "timeout": 1,
        "invalid_response": 1,
    }
    assert run.stats.requests_sent == 5 and not run.stats.failures_by_kind


def cached_statuses(cache_path) -> list[tuple[str, str | None]]:
    with closing(sqlite3.connect(cache_path)) as db:
        return db.execute("SELECT status, error_kind FROM responses ORDER BY status").fetchall()


def test_transient_failures_are_not_cached_and_the_next_run_asks_again(server, tmp_path):
    server.always("500")
    settings = settings_for(server, max_retries=2)
    cache_path = tmp_path / "cache.sqlite"
    items, run = clean(settings, cache_path, all_reports().head(2))
    assert {(r.status, r.error_kind) for r in run.results} == {("failed", "server_error")}
    assert "after 3 attempts" in run.results[0].error
    assert len(server.chat_requests) == 6 and run.stats.failures_by_kind == {"server_error": 2}
    assert cached_statuses(cache_path) == []

    server.always(None)  # the endpoint recovered: the next run, with default settings, asks again
    _, again = clean(settings, cache_path, all_reports().head(2))
    assert [r.status for r in again.results] == ["ok", "ok"] and len(server.chat_requests) == 8
    assert again.stats.cache_hits == 0 and cached_statuses(cache_path) == [("ok", None)] * 2


def test_transient_failures_cached_by_an_older_version_are_asked_again(server, tmp_path):
    cache_path = tmp_path / "cache.sqlite"
    settings = settings_for(server)
    [item] = prior_removal.report_items(all_reports().head(1))
    call = pending_call(settings, prior_removal.PROMPT, item)
    with ResponseCache(cache_path) as cache:
        cache.put(LLMResult("", call.key, "failed", None, error_kind="rate_limited", error="429"), call)
    _, run = clean(settings, cache_path, all_reports().head(1))
    assert run.results[0].status == "ok" and len(server.chat_requests) == 1


def test_a_request_the_endpoint_refuses_stays_a_cached_failure_until_retry_failed(server, tmp_path):
    server.always("400")
    settings = settings_for(server)
    cache_path = tmp_path / "cache.sqlite"
    _, run = clean(settings, cache_path, all_reports().head(1))
    assert (run.results[0].error_kind, len(server.chat_requests)) == ("bad_request", 1)  # never retried
    assert "maximum context length" in run.results[0].error
    server.always(None)
    _, again = clean(settings, cache_path, all_reports().head(1))
    assert again.results[0].error_kind == "bad_request" and again.stats.cache_hits == 1
    assert len(server.chat_requests) == 1
    _, retried = clean(replace(settings, retry_failed=True), cache_path, all_reports().head(1))
    assert retried.results[0].status == "ok" and len(server.chat_requests) == 2
    assert cached_statuses(cache_path) == [("ok", None)]


@pytest.mark.parametrize(("fault", "expected"), [("401", "AuthenticationError"), ("404", "NotFoundError")])
def test_a_rejected_key_or_unknown_model_stops_the_run_and_the_key_is_redacted(
    server, tmp_path, fault, expected
):
    server.always(fault)
    with pytest.raises(EndpointConfigurationError, match=expected) as raised:
        clean(settings_for(server, concurrency=1), tmp_path / "cache.sqlite", all_reports().head(3))
    assert isinstance(raised.value, LLMConfigurationError)
    assert len(server.chat_requests) == 1  # neither retried nor sent for the other items
    assert KEY not in str(raised.value) and (fault != "401" or "***" in str(raised.value))
    assert cached_statuses(tmp_path / "cache.sqlite") == []


def test_a_batch_upload_with_a_rejected_key_stops_the_run(server, tmp_path):
    server.always("401")
    with pytest.raises(EndpointConfigurationError, match="AuthenticationError") as raised:
        clean(settings_for(server, use_batch=True), tmp_path / "cache.sqlite", all_reports().head(2))
    assert KEY not in str(raised.value) and server.api_calls == ["POST /v1/files"]


def test_a_retry_after_beyond_the_limit_fails_the_call_instead_of_stalling(server, tmp_path):
    server.retry_after_s = 30
    server.script(["429"])
    _, run = clean(settings_for(server, max_retry_wait_s=1), tmp_path / "cache.sqlite", all_reports().head(1))
    assert run.results[0].error_kind == "rate_limited" and "asked to wait 30 s" in run.results[0].error


def test_concurrency_limit_holds(server, tmp_path):
    server.latency_s = 0.05
    _, run = clean(settings_for(server, concurrency=3), tmp_path / "cache.sqlite", many_reports(24))
    assert all(r.status == "ok" for r in run.results)
    assert 2 <= server.max_in_flight <= 3


def test_retry_headers_and_backoff():
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    assert retry_after_seconds({}) is None
    settings = LLMSettings(backoff_base_s=1.0, backoff_max_s=5.0)
    waits = [backoff_seconds(settings, "k", attempt) for attempt in range(6)]
    assert waits == [backoff_seconds(settings, "k", attempt) for attempt in range(6)]  # seeded by the request
    assert all(0.5 * min(5.0, 2**a) <= w <= min(5.0, 2**a) for a, w in enumerate(waits))


def test_invalid_conversations_are_asked_again_with_another_seed_then_quarantined(server, tmp_path):
    tables = {
        k: {t: getattr(f(), t) for t in ("images", "reports", "labels", "boxes")}
        for k, f in SOURCE_TABLES.items()
    }
    settings = settings_for(server, concurrency=1)
    cache_path = tmp_path / "cache.sqlite"
    reports = prior_removal.remove_priors(
        all_reports(),
        lambda t, i, offline=None: run_prompts(settings, cache_path, t, i, offline),
        settings.backend_label,
    ).table
    requests_before = len(server.chat_requests)
    server.script(["truncated", "prose"])

    def run(template, items, offline=None):
        return run_prompts(settings, cache_path, template, items, offline)

    output = conversations.build_conversations(tables, reports, run, settings.backend_label)
    assert output.facts["valid_at_attempt"] == {"1": 6, "2": 2}
    seeds = [r.seed for r in server.chat_requests[requests_before:]]
    assert seeds == [0] * 8 + [1, 1]
    assert output.table.height == 8 and set(output.table["backend"]) == {"openai:gpt-4o-mini"}

    server.always("prose")  # now every new answer is invalid: quarantined after max_attempts, raw text kept
    failing = conversations.build_conversations(
        tables, reports, run, settings.backend_label, conversations.ConversationPlan(max_attempts=4)
    )
    assert failing.table.height == 8  # seeds 0 and 1 answered before: served from the cache
    assert failing.stats.requests_sent == 0
    cache_path.unlink()
    failing = conversations.build_conversations(
        tables, reports, run, settings.backend_label, conversations.ConversationPlan(max_attempts=2)
    )
    assert failing.table.height == 0
    invalid = failing.quarantine.filter(failing.quarantine["reason"] == "invalid_json")
    assert invalid.height == 8 and invalid["raw_text"][0].startswith("Sure!")
    assert "after 2 attempts" in invalid["detail"][0]


def test_the_test_split_is_written_by_the_test_model_and_priced_as_such(server, tmp_path):
    tables = {
        k: {t: getattr(f(), t) for t in ("images", "reports", "labels", "boxes")}
        for k, f in SOURCE_TABLES.items()
    }
    settings = settings_for(server)
    cache_path = tmp_path / "cache.sqlite"
    reports = prior_removal.remove_priors(all_reports(), offline_run, "offline-rules").table

    def run(template, items, offline=None, model=None):
        chosen = settings if model is None else replace(settings, model=model)
        return run_prompts(chosen, cache_path, template, items, offline)

    plan = conversations.ConversationPlan(test_model="gpt-4o")
    output = conversations.build_conversations(tables, reports, run, settings.backend_label, plan)
    by_split = dict(output.table.group_by("split").agg(pl.col("backend").unique().sort()).iter_rows())
    assert by_split == {"train": ["openai:gpt-4o-mini"], "test": ["openai:gpt-4o"]}
    assert output.facts["backend_by_split"] == {"test": ["openai:gpt-4o"], "train": ["openai:gpt-4o-mini"]}
    test_requests = [r for r in server.chat_requests if r.model == "gpt-4o"]
    assert len(test_requests) == output.table.filter(pl.col("split") == "test").height == 3
    assert {r.model for r in server.chat_requests} == {"gpt-4o", "gpt-4o-mini"}
    prices = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00)}
    tokens = output.stats.as_metadata(prices, 0.5)["llm_tokens_by_model"]
    expected = sum(
        tokens[model][direction] * prices[model][n] / 1e6
        for model in prices
        for n, direction in enumerate(("in", "out"))
    )
    assert output.stats.as_metadata(prices, 0.5)["llm_estimated_cost_usd"] == pytest.approx(
        expected, abs=1e-6
    )


def test_batch_api_round_trip_matches_direct_calls_and_reruns_are_free(server, tmp_path):
    items, direct = clean(settings_for(server), tmp_path / "direct.sqlite")
    server.script([None, "500"])  # the second line of the batch fails on the server
    batch_settings = settings_for(server, use_batch=True)
    _, batched = clean(batch_settings, tmp_path / "batch.sqlite")
    assert [r.text for n, r in enumerate(batched.results) if n != 1] == [
        r.text for n, r in enumerate(direct.results) if n != 1
    ]
    assert batched.results[1].status == "failed" and batched.results[1].error_kind == "server_error"
    assert {r.origin for r in batched.results} == {"batch"}
    assert (
        batched.stats.batch_requests == len(items)
        and batched.stats.token_count(channel="batch", direction="in") > 0
    )
    _, again = clean(batch_settings, tmp_path / "batch.sqlite")  # only the failed line goes again
    assert again.stats.batch_requests == 1 and again.stats.cache_hits == len(items) - 1
    assert [r.text for r in again.results] == [r.text for r in direct.results]
    calls_after_batches = len(server.api_calls)
    _, third = clean(batch_settings, tmp_path / "batch.sqlite")
    assert len(server.api_calls) == calls_after_batches and third.stats.cache_hits == len(items)


def test_bad_batch_lines_are_quarantined_the_good_answers_recorded_and_the_batch_closed(server, tmp_path):
    settings = settings_for(server, use_batch=True)
    cache_path = tmp_path / "cache.sqlite"
    reports = all_reports().head(5)
    server.script([None, "empty_choices", "no_custom_id", "not_json", None])
    items, run = clean(settings, cache_path, reports)
    assert [r.status for r in run.results] == ["ok", "failed", "failed", "failed", "ok"]
    assert (
        run.results[1].error_kind == "invalid_response"
        and "not a usable chat completion" in run.results[1].error
    )
    assert {run.results[2].error_kind, run.results[3].error_kind} == {"batch_completed"}
    assert run.stats.batch_bad_lines == 3
    with ResponseCache(cache_path) as cache:
        assert cache.open_batches() == {}  # closed: later runs do not poll it again
        bad = cache.bad_lines()
    assert [(b.line_number, b.reason) for b in bad] == [
        (2, "unusable_body"),
        (3, "no_custom_id"),
        (4, "not_json"),
    ]
    assert bad[0].custom_id == run.results[1].cache_key and bad[2].line.startswith('{"id": "req"')
    assert cached_statuses(cache_path) == [("ok", None)] * 2

    _, again = clean(settings, cache_path, reports)  # the three bad ones go again, in a new batch
    assert [r.status for r in again.results] == ["ok"] * 5
    assert again.stats.batch_requests == 3 and again.stats.cache_hits == 2


def test_a_batch_still_running_is_resumed_not_resubmitted(server, tmp_path):
    server.hold_batches = True
    settings = settings_for(server, use_batch=True, batch_max_wait_s=0.05)
    cache_path = tmp_path / "cache.sqlite"
    with pytest.raises(BatchPending, match="materialize again"):
        clean(settings, cache_path)
    with ResponseCache(cache_path) as cache:
        assert len(cache.open_batches()) == 1
    server.hold_batches = False
    items, run = clean(settings, cache_path)
    assert all(r.status == "ok" for r in run.results)
    assert server.api_calls.count("POST /v1/batches") == 1 and server.api_calls.count("POST /v1/files") == 1
    with ResponseCache(cache_path) as cache:
        assert cache.open_batches() == {}
    rows = sqlite3.connect(cache_path).execute("SELECT COUNT(*), MIN(origin) FROM responses").fetchone()
    assert rows == (len(items), "batch")


def test_rate_limits_are_charged_per_attempt_with_the_token_estimate(server, tmp_path, monkeypatch):
    charged = []
    original = AsyncLimiter.acquire

    async def recording_acquire(limiter, amount=1):
        charged.append((limiter.max_rate, amount))
        await original(limiter, amount)

    monkeypatch.setattr(AsyncLimiter, "acquire", recording_acquire)
    server.script(["500"])
    settings = settings_for(
        server, concurrency=1, requests_per_minute=1000, tokens_per_minute=5000, max_tokens=100
    )
    items, run = clean(settings, tmp_path / "cache.sqlite", all_reports().head(2))
    assert all(r.status == "ok" for r in run.results)
    prompt_chars = [sum(len(m["content"]) for m in prior_removal.PROMPT.messages(i.fields)) for i in items]
    expected_tokens = [min(chars / 4 + 100, 5000) for chars in prompt_chars]
    assert charged == [(1000, 1), (5000, expected_tokens[0])] * 2 + [(1000, 1), (5000, expected_tokens[1])]
