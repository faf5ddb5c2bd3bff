"""Throughput of the prior-removal stage against a local OpenAI-compatible server with 200 ms latency.

Each level sends ``concurrency x ROUNDS`` distinct prompts through ``run_prompts`` (real SDK, real HTTP,
answers written to a fresh SQLite cache) and reports requests per second as a fraction of the ideal,
``concurrency / latency``. The server runs in its own process so it does not share our interpreter.

    .venv/bin/python benchmarks/llm_throughput.py [--levels 1 16 64] [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from llm_tables import many_reports  # noqa: E402

from radvlm_pipeline.llm import LLMSettings, prior_removal, run_prompts  # noqa: E402
from radvlm_pipeline.markdown import markdown_row, markdown_table  # noqa: E402

LATENCY_S = 0.2
HEADER = ["concurrency", "requests", "seconds", "requests/s", "ideal/s", "fraction of ideal"]
SERVER = """
import sys, time
sys.path[:0] = sys.argv[2:]
from fake_openai_server import FakeOpenAI
with FakeOpenAI(latency_s=float(sys.argv[1])) as server:
    print(server.port, flush=True)
    while True:
        time.sleep(3600)
"""


def measure(base_url: str, concurrency: int, rounds: int) -> tuple[int, float]:
    items = prior_removal.report_items(many_reports(concurrency * rounds))
    settings = LLMSettings(
        backend="openai",
        base_url=base_url,
        api_key="bench",
        concurrency=concurrency,
        approved_credentialed_datasets=("mimic_cxr",),
    )
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run = run_prompts(settings, Path(tmp) / "cache.sqlite", prior_removal.PROMPT, items)
        elapsed = time.perf_counter() - started
    failed = sum(result.status != "ok" for result in run.results)
    if failed:
        raise RuntimeError(f"{failed} calls failed at concurrency {concurrency}")
    return len(items), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=30, help="prompts per level = concurrency x rounds")
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(LATENCY_S), str(ROOT), str(ROOT / "tests")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
            f"Python {platform.python_version()}; date: {date.today()}; latency {LATENCY_S * 1000:.0f} ms"
        )
        print(markdown_table(HEADER, []))
        for concurrency in args.levels:
            count, elapsed = measure(base_url, concurrency, args.rounds)
            rate, ideal = count / elapsed, concurrency / LATENCY_S
            row = [concurrency, count, f"{elapsed:.2f}", f"{rate:.1f}", f"{ideal:.1f}", f"{rate / ideal:.1%}"]
            print(markdown_row(row))
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
