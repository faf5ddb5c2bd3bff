"""Submit a batch script, follow it to its end, stream its log, and cancel it if the caller stops.

Uses the Slurm command-line tools (sbatch, scontrol, scancel) of the machine it runs on, which must
be a submit host of the cluster; job state comes from ``scontrol`` so no accounting database is needed.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from radvlm_pipeline.launch.commands import (
    TERMINAL_STATES,
    job_outcome,
    parse_job_record,
    parse_sbatch_job_id,
)


class SlurmError(RuntimeError):
    pass


def submit(script_path: Path, environment: dict[str, str] | None = None) -> str:
    """``environment`` is added to what the job inherits (sbatch exports the submitter's environment):
    the way to hand a job a secret without writing it into the script on shared storage."""
    env = {**os.environ, **environment} if environment else None
    done = subprocess.run(["sbatch", "--parsable", str(script_path)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SlurmError(f"sbatch {script_path} failed: {done.stderr.strip()}")
    return parse_sbatch_job_id(done.stdout)


def job_record(job_id: str) -> dict[str, str] | None:
    """The job's scontrol record, or None once Slurm has forgotten it (MinJobAge after it ended)."""
    done = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return None
        raise SlurmError(f"scontrol show job {job_id} failed: {done.stderr.strip()}")
    return parse_job_record(done.stdout)


def cancel(job_id: str) -> None:
    subprocess.run(["scancel", job_id], capture_output=True, text=True, check=False)


class LogFollower:
    """Hands each complete new line of a growing log file to ``on_line``."""

    def __init__(self, path: Path, on_line: Callable[[str], None]):
        self.path = path
        self.on_line = on_line
        self.offset = 0
        self.partial = ""

    def poll(self, final: bool = False) -> None:
        if self.path.exists():
            with self.path.open("r", errors="replace") as log:
                log.seek(self.offset)
                chunk = log.read()
                self.offset = log.tell()
            *lines, self.partial = (self.partial + chunk).split("\n")
            for line in lines:
                self.on_line(line)
        if final and self.partial:
            self.on_line(self.partial)
            self.partial = ""


def run_job(
    script_path: Path,
    log_path: Path,
    on_line: Callable[[str], None],
    on_submitted: Callable[[str], None] = lambda job_id: None,
    poll_seconds: float = 2.0,
) -> tuple[str, str, int]:
    """Submit and wait: returns (job id, final state, exit code). Whatever stops the wait early (the
    Dagster run terminated, Ctrl-C, an error in a callback) cancels the job before propagating."""
    job_id = submit(script_path)
    on_submitted(job_id)
    follower = LogFollower(log_path, on_line)
    try:
        while True:
            record = job_record(job_id)
            follower.poll()
            if record is None:
                raise SlurmError(f"job {job_id} vanished from scontrol before its end was seen")
            state, exit_code = job_outcome(record)
            if state in TERMINAL_STATES:
                follower.poll(final=True)
                return job_id, state, exit_code
            time.sleep(poll_seconds)
    except BaseException:
        cancel(job_id)
        raise
