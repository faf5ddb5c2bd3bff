"""Where training runs: a subprocess on this machine, or a Slurm job; both report back over Dagster Pipes.

The fine-tuning asset only calls ``launch(context, config_path, job_dir, extras)``, which returns what
the training reported (its summary); which launcher is bound to the ``training_launcher`` resource key
decides where it runs.

Why not the community ``dagster-slurm`` package: it reaches the cluster over SSH from an edge node,
ships the environment with pixi-pack, and its launchers start one Python payload (Bash) or a Ray /
Spark cluster; none runs a torchrun/DeepSpeed rendezvous across N nodes x G GPUs, and its pixi
packaging cannot run offline. Here the Dagster process runs on a submit host with shared storage,
writes the batch script itself, and exchanges Pipes context and messages through files on that storage.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    ConfigurableResource,
    Failure,
    MetadataValue,
    PipesClientCompletedInvocation,
    PipesFileContextInjector,
    PipesFileMessageReader,
    PipesSubprocessClient,
    open_pipes_session,
)
from pydantic import Field

from radvlm_pipeline.launch.commands import (
    CLUSTER_ENDED_STATES,
    LOCAL_MODES,
    SlurmJobSpec,
    local_command,
    sbatch_script,
)
from radvlm_pipeline.launch.slurm import run_job
from radvlm_pipeline.layout import PROJECT_ROOT


class TrainingLauncher(ConfigurableResource):
    """Starts the training script for one run and returns what it reported through Pipes."""

    python_executable: str = Field(
        default="", description="Python that runs the training (default: the one running Dagster)."
    )

    @property
    def python(self) -> str:
        return self.python_executable or sys.executable

    def describe(self) -> str:
        raise NotImplementedError

    def launch(self, context: AssetExecutionContext, config_path: Path, job_dir: Path, extras: dict) -> dict:
        raise NotImplementedError


# Not a command: the training runs inside the Dagster step's own process.
IN_PROCESS = "inprocess"


class LocalTrainingLauncher(TrainingLauncher):
    """This machine: plain python (1 process), torchrun or the deepspeed launcher (N processes; gloo on
    CPU, nccl on GPU), or ``inprocess``: the training function called in the step's own process, which
    saves starting an interpreter and importing torch and transformers again (seconds per run, most of
    a small CPU run such as the demo's) at the price of isolation: a crash fails the step with it."""

    mode: str = Field(default="python", description=f"one of {(*LOCAL_MODES, IN_PROCESS)}")
    processes: int = Field(default=1, description="processes on this machine (one per GPU on a GPU host)")

    def describe(self) -> str:
        return f"local {self.mode} x{self.processes}"

    def launch(self, context, config_path, job_dir, extras):
        if self.mode == IN_PROCESS:
            return train_in_process(context, config_path, self.processes)
        command = local_command(self.mode, self.processes, config_path, self.python)
        context.log.info("launching: " + " ".join(command))
        invocation = PipesSubprocessClient(cwd=str(PROJECT_ROOT)).run(
            context=context, command=command, extras=extras
        )
        return invocation.get_materialize_result().metadata or {}


class _StepPipes:
    """What the training reports to when it runs in the step's process: the step's own log, and the
    summary it would have sent over Pipes."""

    def __init__(self, context: AssetExecutionContext):
        self.log = context.log
        self.reported: dict = {}

    def report_custom_message(self, payload) -> None:
        """Step metrics are in metrics.jsonl and, every ``log_every_steps``, in the log already."""

    def report_asset_materialization(self, metadata: dict) -> None:
        self.reported = dict(metadata)


def train_in_process(context: AssetExecutionContext, config_path: Path, processes: int) -> dict:
    if processes != 1:
        raise ValueError(f"mode {IN_PROCESS!r} trains in one process; use torchrun or deepspeed for more")
    from radvlm_pipeline.torch_threads import one_cpu_thread
    from radvlm_pipeline.training.config import TrainConfig
    from radvlm_pipeline.training.train import train

    pipes = _StepPipes(context)
    context.log.info(f"training in this process: {config_path}")
    with one_cpu_thread():  # the training sets it for its process; the step gets its own count back
        train(TrainConfig.from_yaml(config_path), pipes=pipes)
    return pipes.reported


class SlurmTrainingLauncher(TrainingLauncher):
    """A Slurm batch job of ``nodes`` x ``processes_per_node`` processes, submitted from this host.

    The job directory (script, log, Pipes files) must be on storage the compute nodes share, as must
    the project checkout and the storage root."""

    nodes: int = Field(default=1)
    processes_per_node: int = Field(default=1, description="training processes per node, usually its GPUs")
    gpus_per_node: int = Field(default=0, description="GPUs to request per node (0 on a CPU cluster)")
    cpus_per_task: int = Field(default=8, description="CPUs per node for torchrun and its data workers")
    time_limit: str = Field(default="12:00:00")
    partition: str | None = Field(default=None)
    account: str | None = Field(default=None)
    extra_sbatch_lines: list[str] = Field(default_factory=list, description='e.g. ["--qos=high"]')
    workdir: str = Field(default="", description="project checkout on shared storage (default: this one)")
    poll_seconds: float = Field(default=5.0)

    def describe(self) -> str:
        return f"slurm {self.nodes} node(s) x {self.processes_per_node} process(es)"

    def launch(self, context, config_path, job_dir, extras):
        job_dir.mkdir(parents=True, exist_ok=True)
        with open_pipes_session(
            context=context,
            extras=extras,
            context_injector=PipesFileContextInjector(str(job_dir / "pipes_context.json")),
            message_reader=PipesFileMessageReader(str(job_dir / "pipes_messages.jsonl")),
        ) as session:
            spec = SlurmJobSpec(
                job_name=f"radvlm-{context.partition_key if context.has_partition_key else 'train'}",
                nodes=self.nodes,
                processes_per_node=self.processes_per_node,
                gpus_per_node=self.gpus_per_node,
                cpus_per_task=self.cpus_per_task,
                time_limit=self.time_limit,
                python=self.python,
                workdir=Path(self.workdir or PROJECT_ROOT),
                config_path=config_path,
                log_path=job_dir / "slurm.log",
                environment=session.get_bootstrap_env_vars(),
                partition=self.partition,
                account=self.account,
                extra_sbatch_lines=self.extra_sbatch_lines,
            )
            script_path = job_dir / "train.sbatch"
            script_path.write_text(sbatch_script(spec))
            job_id, state, exit_code = run_job(
                script_path,
                spec.log_path,
                on_line=lambda line: context.log.info(f"[slurm] {line}"),
                on_submitted=lambda job_id: context.log.info(f"submitted Slurm job {job_id}: {script_path}"),
                poll_seconds=self.poll_seconds,
            )
            if state != "COMPLETED" or exit_code != 0:
                raise Failure(
                    description=f"Slurm job {job_id} ended {state} with exit code {exit_code}",
                    metadata={
                        "log": MetadataValue.path(str(spec.log_path)),
                        "script": MetadataValue.path(str(script_path)),
                    },
                    # Worth a retry (resuming from the latest checkpoint) only when the cluster, not the
                    # training, ended the job; a crashing training would crash again.
                    allow_retries=state in CLUSTER_ENDED_STATES,
                )
            context.log.info(f"Slurm job {job_id} completed")
        invocation = PipesClientCompletedInvocation(session, metadata={"slurm_job_id": job_id})
        return invocation.get_materialize_result().metadata or {}
