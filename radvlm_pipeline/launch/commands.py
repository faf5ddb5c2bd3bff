"""Command lines and Slurm batch scripts that start the training script; plain functions, no Dagster.

Local runs use one of three launchers: plain ``python`` (one process), ``torchrun`` (N processes, DDP
or DeepSpeed inside) or the ``deepspeed`` launcher. On Slurm, ``srun`` starts one ``torchrun`` per node
and torchrun's c10d rendezvous on the first node joins them into one job of nodes x processes; the
DeepSpeed engine runs inside each process when the training config names a ZeRO config. (DeepSpeed's
own multi-node launcher reaches nodes over pdsh/ssh, which srun makes unnecessary inside an allocation.)
"""

from __future__ import annotations

import re
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path

TRAIN_MODULE = "radvlm_pipeline.training.train"
LOCAL_MODES = ("python", "torchrun", "deepspeed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def local_command(
    mode: str, processes: int, config_path: Path, python: str, master_port: int | None = None
) -> list[str]:
    """The argv that trains with ``config_path`` on this machine."""
    if mode == "python":
        if processes != 1:
            raise ValueError("mode 'python' runs one process; use torchrun or deepspeed for more")
        return [python, "-m", TRAIN_MODULE, "--config", str(config_path)]
    if mode == "torchrun":
        return [
            python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            TRAIN_MODULE,
            "--config",
            str(config_path),
        ]
    if mode == "deepspeed":
        # --num_gpus is the process count; on a CPU machine DeepSpeed's CPU accelerator uses gloo.
        return [
            python,
            "-m",
            "deepspeed.launcher.runner",
            f"--num_gpus={processes}",
            f"--master_port={master_port or free_port()}",
            "--module",
            TRAIN_MODULE,
            "--config",
            str(config_path),
        ]
    raise ValueError(f"unknown local launch mode {mode!r}; expected one of {LOCAL_MODES}")


@dataclass
class SlurmJobSpec:
    """What an sbatch script for one training run needs."""

    job_name: str
    nodes: int
    processes_per_node: int  # usually the GPUs per node
    gpus_per_node: int  # 0 on a CPU cluster
    cpus_per_task: int
    time_limit: str  # Slurm syntax, e.g. "12:00:00"
    python: str
    workdir: Path  # the project checkout on shared storage
    config_path: Path
    log_path: Path
    environment: dict[str, str] = field(default_factory=dict)  # e.g. the Dagster Pipes bootstrap variables
    partition: str | None = None
    account: str | None = None
    extra_sbatch_lines: list[str] = field(default_factory=list)  # e.g. ["--qos=high", "--constraint=h100"]


def sbatch_header(spec, placement: list[str]) -> str:
    """The shebang and ``#SBATCH`` lines of a job, for any spec with the fields of ``SlurmJobSpec`` but
    the training ones (the serving job's too); ``placement`` says how many nodes and tasks."""
    directives = [
        f"--job-name={spec.job_name}",
        *placement,
        f"--cpus-per-task={spec.cpus_per_task}",
        f"--time={spec.time_limit}",
        f"--output={spec.log_path}",
        f"--chdir={spec.workdir}",
    ]
    if spec.gpus_per_node:
        directives.append(f"--gpus-per-node={spec.gpus_per_node}")
    if spec.partition:
        directives.append(f"--partition={spec.partition}")
    if spec.account:
        directives.append(f"--account={spec.account}")
    directives += [line.removeprefix("#SBATCH ").strip() for line in spec.extra_sbatch_lines]
    return "#!/bin/bash\n" + "".join(f"#SBATCH {d}\n" for d in directives) + "set -euo pipefail\n"


def sbatch_script(spec: SlurmJobSpec) -> str:
    # One torchrun per node; it spawns the per-GPU processes.
    header = sbatch_header(spec, [f"--nodes={spec.nodes}", "--ntasks-per-node=1"])
    exports = "".join(
        f"export {name}={shlex.quote(value)}\n" for name, value in sorted(spec.environment.items())
    )
    torchrun = " ".join(
        [
            shlex.quote(spec.python),
            "-m",
            "torch.distributed.run",
            '--nnodes="$SLURM_NNODES"',
            f"--nproc_per_node={spec.processes_per_node}",
            '--rdzv_id="$SLURM_JOB_ID"',
            "--rdzv_backend=c10d",
            '--rdzv_endpoint="$head_node:$rendezvous_port"',
            "-m",
            TRAIN_MODULE,
            "--config",
            shlex.quote(str(spec.config_path)),
        ]
    )
    return (
        header
        + exports
        + 'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)\n'
        # A port derived from the job id: two jobs sharing a head node do not collide.
        + "rendezvous_port=$((20000 + SLURM_JOB_ID % 20000))\n"
        + 'echo "job $SLURM_JOB_ID: $SLURM_NNODES node(s), rendezvous at $head_node:$rendezvous_port"\n'
        # --kill-on-bad-exit: one failed node ends the job instead of leaving the others waiting.
        + f"srun --kill-on-bad-exit=1 {torchrun}\n"
    )


# ------------------------------------------------------------------------------------------------
# Following a job: ``scontrol show job -o`` works without the accounting database (sacct needs slurmdbd).

TERMINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}
# Ends the cluster imposed on a job that was running fine: a resubmission resumes from a checkpoint.
CLUSTER_ENDED_STATES = {"TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL"}


def parse_sbatch_job_id(output: str) -> str:
    """``sbatch --parsable`` prints ``<id>`` or ``<id>;<cluster>``."""
    match = re.match(r"\s*(\d+)", output)
    if not match:
        raise ValueError(f"sbatch printed no job id: {output!r}")
    return match.group(1)


def parse_job_record(scontrol_line: str) -> dict[str, str]:
    """The key=value fields of ``scontrol show job -o <id>`` (values may not contain spaces)."""
    return dict(item.split("=", 1) for item in scontrol_line.split() if "=" in item)


def job_outcome(record: dict[str, str]) -> tuple[str, int]:
    """(state, exit code) of a job record; the state loses qualifiers such as 'CANCELLED by 0'."""
    state = record.get("JobState", "UNKNOWN").split()[0]
    exit_code = int(record.get("ExitCode", "0:0").split(":")[0])
    return state, exit_code
