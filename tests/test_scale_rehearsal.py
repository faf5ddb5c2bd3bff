"""The scale rehearsal (benchmarks/scale_rehearsal.py) at a small fraction: the whole graph through Dagster
on a generated data root with files, the training data loader and the metrics, green. Its figures are
for benchmarks/RESULTS.md; here only that every stage ran and held its invariants."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from radvlm_pipeline.sources.registry import READERS

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "scale_rehearsal.py"


@pytest.mark.slow
def test_the_whole_graph_runs_green_at_a_small_fraction(tmp_path):
    results = tmp_path / "rehearsal.json"
    command = [sys.executable, str(SCRIPT), "--fraction", "0.001", "--work", str(tmp_path / "work")]
    command += [
        "--loader-steps",
        "10",
        "--loader-workers",
        "0",
        "--skip-operating-cases",
        "--json",
        str(results),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    rows = {row["stage"]: row for row in json.loads(results.read_text())["rows"]}

    for source in READERS:
        assert rows[source]["rows_out"] > 0, source
        assert rows[source]["quarantined"] <= rows[source]["rows_in"], source
        assert rows[source]["notes"] == "checks 4/4 passed", source
    assert rows["corpus_catalog"]["notes"] == "checks 4/4 passed"
    corpus = [row for stage, row in rows.items() if stage.startswith("corpus [") and "runs)" not in stage]
    assert (
        len(corpus) == 12
        and sum(row["rows_out"] for row in corpus) == rows["corpus_llava_export"]["rows_out"]
    )
    assert rows["reports_without_priors"]["llm"]["llm_offline_answers"] > 0
    assert rows["training data loader"]["rows_out"] == 10 * 8  # micro-batches x rows, every image decoded
    assert max(row.get("peak_rss_gib", 0) for row in rows.values()) < 6
