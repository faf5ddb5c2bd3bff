"""Serving trained weights behind an OpenAI-compatible endpoint: vLLM as a local process or a Slurm job,
or a server someone else runs; in every case the served weights are checked before a request is sent.

The check rests on the served model name, ``radvlm-<model>-<fingerprint of the weights folder>``
(``served_model_name``): a server started here is given that name, a server started by hand must be,
and ``/v1/models`` must list it. A server still holding last week's weights, or another recipe's,
then fails the check instead of quietly answering for the wrong model. The same name goes into every
cache key of the answers, so retrained weights never reuse the old weights' answers.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import openai

from radvlm_pipeline.launch.commands import TERMINAL_STATES, job_outcome, sbatch_header
from radvlm_pipeline.launch.slurm import cancel, job_record, submit
from radvlm_pipeline.training.base_model import fingerprint

VLLM = "vllm"
STOP_GRACE_S = 30.0  # vLLM frees its GPU memory on SIGTERM; after this it is killed


class ServingError(RuntimeError):
    """No server with the right weights could be had; the message says what is missing."""


@dataclass(frozen=True)
class ServedEndpoint:
    base_url: str  # ends in /v1
    model: str  # the served model name, the weights' fingerprint in it
    card: dict = field(default_factory=dict)  # the server's /v1/models entry (vLLM: root, max_model_len)
    api_key: str | None = field(default=None, repr=False)


def served_model_name(model: str, weights_dir: Path) -> str:
    return f"radvlm-{model}-{fingerprint(weights_dir)}"


def vllm_command(
    executable: str,
    weights_dir: Path,
    served_name: str,
    host: str,
    port: int | str,
    extra_args: Sequence[str] = (),
    media_root: Path | None = None,
) -> list[str]:
    """``vllm serve`` for one weights folder. ``media_root`` lets the server read images from disk when
    they are sent as file URLs; ``extra_args`` carry what depends on the hardware (``--dtype``,
    ``--tensor-parallel-size``, ``--max-model-len``, ``--gpu-memory-utilization``)."""
    command = [
        executable,
        "serve",
        str(weights_dir),
        "--served-model-name",
        served_name,
        "--host",
        host,
        "--port",
        str(port),
        "--seed",
        "0",
    ]
    if media_root is not None:
        command += ["--allowed-local-media-path", str(media_root)]
    return command + list(extra_args)


def require_executable(executable: str) -> str:
    found = shutil.which(executable)
    if found is None:
        raise ServingError(
            f"vLLM is not installed here: no {executable!r} executable on PATH. Install vLLM where the GPUs "
            "are (pip install vllm), give the answer server the URL of a running server instead "
            "(RADVLM_SERVING_MODE=url, RADVLM_SERVING_URL), or generate with the local backend."
        )
    return found


def served_models(base_url: str, api_key: str | None, timeout_s: float = 10.0) -> list[dict]:
    """The server's ``/v1/models`` entries, through the openai SDK."""
    with openai.OpenAI(
        base_url=base_url, api_key=api_key or "no-key", max_retries=0, timeout=timeout_s
    ) as client:
        return [model.model_dump() for model in client.models.list()]


def verify_served_model(
    base_url: str, api_key: str | None, expected: str, weights_dir: Path
) -> ServedEndpoint:
    """The endpoint, once ``/v1/models`` lists ``expected``; otherwise ServingError naming what it serves."""
    models = served_models(base_url, api_key)
    for card in models:
        if card.get("id") == expected:
            return ServedEndpoint(base_url, expected, card, api_key)
    served = ", ".join(f"{card.get('id')} (from {card.get('root')})" for card in models) or "nothing"
    raise ServingError(
        f"{base_url} serves {served}, not {expected}: those are not the weights in {weights_dir} (the name "
        f"carries their fingerprint). Serve them as: vllm serve {shlex.quote(str(weights_dir))} "
        f"--served-model-name {expected}"
    )


def wait_until_serving(
    base_url: str,
    api_key: str | None,
    timeout_s: float,
    why_dead: Callable[[], str | None],
    poll_s: float = 2.0,
) -> None:
    """Poll ``/v1/models`` until the server answers; ``why_dead()`` says when the server has given up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            served_models(base_url, api_key, timeout_s=poll_s)
            return
        except openai.APIConnectionError:
            pass  # not listening yet
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise ServingError(f"{base_url} refused the API key ({exc.status_code})") from exc
        reason = why_dead()
        if reason is not None:
            raise ServingError(reason)
        if time.monotonic() >= deadline:
            raise ServingError(f"no server answered at {base_url} within {timeout_s:.0f} s")
        time.sleep(poll_s)


def log_tail(path: Path, lines: int = 20) -> str:
    if not path.is_file():
        return f"({path} was not written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (vLLM's engine runs in child processes), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def local_server(
    command: Sequence[str], base_url: str, log_path: Path, startup_timeout_s: float, poll_s: float = 2.0
) -> Iterator[subprocess.Popen]:
    """Run ``command`` (a ``vllm_command``) until the block ends, once it answers at ``base_url``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:

        def why_dead() -> str | None:
            if process.poll() is None:
                return None
            return (
                f"the server exited with code {process.returncode} before serving; the end of {log_path}:\n"
                + log_tail(log_path)
            )

        wait_until_serving(base_url, None, startup_timeout_s, why_dead, poll_s)
        yield process
    finally:
        _stop(process)


# Slurm ------------------------------------------------------------------------------------------


@dataclass
class ServingJobSpec:
    job_name: str
    command: list[str]  # a vllm_command whose host is 0.0.0.0 and port "$port"
    address_path: Path  # where the job writes host:port once it knows its node
    log_path: Path
    workdir: Path
    gpus_per_node: int
    cpus_per_task: int
    time_limit: str
    partition: str | None = None
    account: str | None = None
    extra_sbatch_lines: list[str] = field(default_factory=list)


def serving_sbatch_script(spec: ServingJobSpec) -> str:
    """One node running the server; the node and port are only known inside the job, so it writes them
    to ``address_path`` (shared storage) for the submitting step to find."""
    command = " ".join('"$port"' if part == "$port" else shlex.quote(part) for part in spec.command)
    return (
        sbatch_header(spec, ["--nodes=1", "--ntasks=1"])
        # A port derived from the job id: two servers sharing a node do not collide.
        + "port=$((20000 + SLURM_JOB_ID % 20000))\n"
        + f'echo "$(hostname):$port" > {shlex.quote(str(spec.address_path))}\n'
        + f"exec {command}\n"
    )


@contextmanager
def slurm_server(
    script_path: Path,
    address_path: Path,
    log_path: Path,
    api_key: str | None,
    startup_timeout_s: float,
    on_submitted: Callable[[str], None] = lambda job_id: None,
    poll_s: float = 5.0,
    environment: dict[str, str] | None = None,
) -> Iterator[str]:
    """Submit the serving job and yield its base URL once it answers; the job is cancelled at the end
    of the block, however it ends."""
    address_path.unlink(missing_ok=True)
    job_id = submit(script_path, environment)
    on_submitted(job_id)
    try:
        deadline = time.monotonic() + startup_timeout_s

        def why_dead() -> str | None:
            record = job_record(job_id)
            state = job_outcome(record)[0] if record else "GONE"
            if state in TERMINAL_STATES or state == "GONE":
                return (
                    f"Slurm job {job_id} ended {state} before serving; the end of {log_path}:\n"
                    + log_tail(log_path)
                )
            return None

        while not address_path.is_file() or not address_path.read_text().strip():
            reason = why_dead()
            if reason is not None:
                raise ServingError(reason)
            if time.monotonic() >= deadline:
                raise ServingError(f"Slurm job {job_id} did not start within {startup_timeout_s:.0f} s")
            time.sleep(poll_s)
        base_url = f"http://{address_path.read_text().strip()}/v1"
        wait_until_serving(base_url, api_key, max(1.0, deadline - time.monotonic()), why_dead, poll_s)
        yield base_url
    finally:
        cancel(job_id)
