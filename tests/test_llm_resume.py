"""A run killed half-way (SIGKILL, a real process) resumes without repeating any completed call."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAI, report_of
from llm_tables import many_reports

from radvlm_pipeline.llm import LLMSettings, prior_removal, run_prompts

REPORTS = 80
CONCURRENCY = 4
WORKER = f"""
import sys
from pathlib import Path
sys.path[:0] = sys.argv[3:]
from llm_tables import many_reports
from radvlm_pipeline.llm import LLMSettings, prior_removal, run_prompts
settings = LLMSettings(backend="openai", base_url=sys.argv[1], api_key="k", concurrency={CONCURRENCY},
                       approved_credentialed_datasets=("mimic_cxr",))
run_prompts(settings, Path(sys.argv[2]), prior_removal.PROMPT, prior_removal.report_items(many_reports({REPORTS})))
"""


def recorded_reports(cache_path: Path) -> set[str]:
    if not cache_path.exists():
        return set()
    with closing(sqlite3.connect(cache_path)) as db:
        try:
            rows = db.execute("SELECT messages_json FROM responses WHERE status = 'ok'").fetchall()
        except sqlite3.OperationalError:  # the worker has not created the table yet
            return set()
    return {report_of(json.loads(messages)[-1]["content"]) for (messages,) in rows}


@pytest.mark.slow
def test_killed_run_resumes_without_repeating_completed_calls(tmp_path):
    cache_path = tmp_path / "cache.sqlite"
    tests_dir = Path(__file__).parent
    with FakeOpenAI(latency_s=0.05) as server:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                server.base_url,
                str(cache_path),
                str(tests_dir.parent),
                str(tests_dir),
            ]
        )
        deadline = time.monotonic() + 60
        while (
            len(recorded_reports(cache_path)) < 12 and time.monotonic() < deadline and worker.poll() is None
        ):
            time.sleep(0.01)
        worker.kill()
        worker.wait()
        done_before_kill = recorded_reports(cache_path)
        assert 12 <= len(done_before_kill) < REPORTS, "the worker must be killed mid-run"

        settings = LLMSettings(
            backend="openai",
            base_url=server.base_url,
            api_key="k",
            concurrency=CONCURRENCY,
            approved_credentialed_datasets=("mimic_cxr",),
        )
        items = prior_removal.report_items(many_reports(REPORTS))
        resumed = run_prompts(settings, cache_path, prior_removal.PROMPT, items)

    assert all(result.status == "ok" for result in resumed.results)
    assert resumed.stats.cache_hits == len(done_before_kill)
    requests_per_report = {}
    for request in server.chat_requests:
        report = report_of(request.user_message)
        requests_per_report[report] = requests_per_report.get(report, 0) + 1
    assert all(requests_per_report[report] == 1 for report in done_before_kill)
    assert set(requests_per_report) == {item.fields["report"] for item in items}
    # Only requests in flight at the kill can have been sent twice.
    assert len(server.chat_requests) <= REPORTS + CONCURRENCY
