"""The durable answer cache: one SQLite file under the storage root, keyed by content.

Each answer is committed the moment it arrives, so a run killed half-way loses only the calls that were
in flight, and a re-run with the same inputs sends nothing. SQLite (WAL mode) is enough: one writer per
run, small rows, and the file survives a kill -9 intact. Besides the answer it keeps what produced it
(endpoint kind, model, template and version, parameters, messages), so any output can be traced to its
prompt. It never holds the API key.

Batch API submissions are recorded too, so a run interrupted while a batch is in progress picks the
same batch up again instead of paying for a second one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from radvlm_pipeline.llm.calls import BadLine, LLMResult, PendingCall

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    cache_key TEXT PRIMARY KEY,
    endpoint_kind TEXT NOT NULL,
    model TEXT NOT NULL,
    template_name TEXT NOT NULL,
    template_version TEXT NOT NULL,
    params_json TEXT NOT NULL,
    messages_json TEXT NOT NULL,
    status TEXT NOT NULL,
    text TEXT,
    finish_reason TEXT,
    error_kind TEXT,
    error TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_s REAL,
    origin TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_requests (
    batch_id TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    call_json TEXT NOT NULL,  -- the PendingCall, to file its answer even if another run collects it
    PRIMARY KEY (batch_id, cache_key)
);
CREATE TABLE IF NOT EXISTS batch_bad_lines (  -- result lines that could not be used, kept as received
    batch_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    line_number INTEGER NOT NULL,
    custom_id TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    line TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (batch_id, file_id, line_number)
);
"""

_RESULT_COLUMNS = (
    "cache_key",
    "status",
    "text",
    "finish_reason",
    "error_kind",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "origin",
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ResponseCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit: each write is durable on return
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: each commit survives a killed process
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get_many(self, keys: Iterable[str]) -> dict[str, LLMResult]:
        """Cached results by key (item_id left empty: one answer may serve several items)."""
        found: dict[str, LLMResult] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            rows = self._db.execute(
                f"SELECT {', '.join(_RESULT_COLUMNS)} FROM responses WHERE cache_key IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            for row in rows:
                values = dict(zip(_RESULT_COLUMNS, row))
                found[values["cache_key"]] = LLMResult(item_id="", **values)
        return found

    def put(self, result: LLMResult, call: PendingCall) -> None:
        now = _now()
        self._db.execute(
            """
            INSERT INTO responses (cache_key, endpoint_kind, model, template_name, template_version, params_json,
                messages_json, status, text, finish_reason, error_kind, error, prompt_tokens, completion_tokens,
                latency_s, origin, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (cache_key) DO UPDATE SET
                status = excluded.status, text = excluded.text, finish_reason = excluded.finish_reason,
                error_kind = excluded.error_kind, error = excluded.error, prompt_tokens = excluded.prompt_tokens,
                completion_tokens = excluded.completion_tokens, latency_s = excluded.latency_s,
                origin = excluded.origin, updated_at = excluded.updated_at
            """,
            (
                call.key,
                call.endpoint_kind,
                call.model,
                call.template_name,
                call.template_version,
                json.dumps(dict(call.params), sort_keys=True),
                json.dumps(list(call.messages), ensure_ascii=False),
                result.status,
                result.text,
                result.finish_reason,
                result.error_kind,
                result.error,
                result.prompt_tokens,
                result.completion_tokens,
                result.latency_s,
                result.origin,
                now,
                now,
            ),
        )

    # Batch API bookkeeping -------------------------------------------------------------------------

    def record_batch(self, batch_id: str, calls: Sequence[PendingCall]) -> None:
        now = _now()
        with self._db:  # one transaction: a batch is recorded with all its requests or not at all
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO batches VALUES (?, ?, ?, ?)", (batch_id, "submitted", now, now))
            self._db.executemany(
                "INSERT INTO batch_requests VALUES (?, ?, ?)",
                [(batch_id, call.key, json.dumps(asdict(call), ensure_ascii=False)) for call in calls],
            )

    def set_batch_status(self, batch_id: str, status: str) -> None:
        self._db.execute(
            "UPDATE batches SET status = ?, updated_at = ? WHERE batch_id = ?", (status, _now(), batch_id)
        )

    def record_bad_lines(self, batch_id: str, lines: Sequence[BadLine]) -> None:
        now = _now()
        self._db.executemany(
            "INSERT OR REPLACE INTO batch_bad_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (batch_id, b.file_id, b.line_number, b.custom_id, b.reason, b.detail, b.line, now)
                for b in lines
            ],
        )

    def bad_lines(self) -> list[BadLine]:
        rows = self._db.execute(
            "SELECT file_id, line_number, custom_id, reason, detail, line FROM batch_bad_lines "
            "ORDER BY batch_id, file_id, line_number"
        )
        return [BadLine(*row) for row in rows]

    def open_batches(self) -> dict[str, list[PendingCall]]:
        """Submitted batches whose results have not been merged yet, with their requests."""
        rows = self._db.execute(
            "SELECT b.batch_id, r.call_json FROM batches b JOIN batch_requests r USING (batch_id) "
            "WHERE b.status = 'submitted' ORDER BY b.created_at, r.cache_key"
        )
        batches: dict[str, list[PendingCall]] = {}
        for batch_id, call_json in rows:
            batches.setdefault(batch_id, []).append(PendingCall(**json.loads(call_json)))
        return batches
