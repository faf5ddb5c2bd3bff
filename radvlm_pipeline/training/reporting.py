"""What a training run says while it trains: every step to metrics.jsonl, some to the log and to Dagster.

Only rank 0 reports, so a run with eight processes writes one history. Dagster Pipes is opened only when
Dagster launched the run, so a run started by hand needs no Dagster installed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from radvlm_pipeline.layout import RunLayout

log = logging.getLogger("radvlm.train")


class Reporter:
    """Writes metrics to metrics.jsonl and the log; mirrors them to Dagster Pipes when launched by Dagster.

    ``pipes`` is what a run inside the Dagster step's own process reports to instead (anything with the
    ``log.info``, ``report_custom_message`` and ``report_asset_materialization`` of a Pipes context)."""

    def __init__(
        self,
        output_dir: Path,
        rank: int,
        start_step: int,
        pipes_stack: contextlib.ExitStack,
        pipes=None,
    ):
        self.active = rank == 0
        self.pipes = pipes if self.active else None
        self.metrics_path = RunLayout(output_dir).metrics
        if not self.active:
            return
        if pipes is None and os.environ.get("DAGSTER_PIPES_CONTEXT"):
            from dagster_pipes import open_dagster_pipes  # needed only when launched by Dagster

            self.pipes = pipes_stack.enter_context(open_dagster_pipes())
        # A resumed run rewrites history after its checkpoint: steps past it are trained again.
        kept = []
        if self.metrics_path.exists():
            kept = [
                line
                for line in self.metrics_path.read_text().splitlines()
                if json.loads(line)["step"] <= start_step
            ]
        self.metrics_path.write_text("".join(line + "\n" for line in kept))

    def info(self, message: str) -> None:
        if self.active:
            log.info(message)
            if self.pipes:
                self.pipes.log.info(message)

    def step(self, metrics: dict, announce: bool) -> None:
        """Every step goes to metrics.jsonl (the loss curve); only announced ones to the log and to
        Dagster, so a long run does not flood the event log."""
        if not self.active:
            return
        with self.metrics_path.open("a") as out:
            out.write(json.dumps(metrics) + "\n")
        if not announce:
            return
        line = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        if self.pipes:  # into the Dagster run's log only: the launcher forwards stderr to its terminal too
            self.pipes.log.info(line)
            self.pipes.report_custom_message(metrics)
        else:
            log.info(line)

    def finish(self, summary: dict) -> None:
        if self.active and self.pipes:
            self.pipes.report_asset_materialization(metadata=summary)
