"""Long-running Dagster processes a test starts (`dagster dev`, `dagster-daemon run`) and must not outlive it."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM the process's whole group (it was started with ``start_new_session=True``, so its code
    servers and run workers are in it), then SIGKILL what has not ended after ``grace_s``."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
