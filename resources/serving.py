"""The answer server: where ``eval_answers`` sends its requests when its backend is ``served``.

Three ways to get a server for a partition's weights, chosen by ``mode``:
- ``local``: ``vllm serve <weights>`` as a process on this machine, for the step only (bound to
  127.0.0.1, a free port, its log in ``<answers>/<model>/server.log``);
- ``slurm``: the same as a one-node Slurm job, cancelled when the step ends; the server listens on
  the cluster network, so each job gets a fresh random API key, handed over in the environment;
- ``url``: a server someone runs, serving the weights under the name the step expects.

Whichever it is, ``/v1/models`` must list ``radvlm-<model>-<fingerprint of the weights>`` before a request
goes out (``radvlm_pipeline/launch/serving.py``). The API key of a ``url`` server comes from the
environment through ``EnvVar`` and is never written to metadata, logs or the cache.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from radvlm_pipeline.launch.commands import free_port
from radvlm_pipeline.launch.serving import (
    VLLM,
    ServedEndpoint,
    ServingError,
    ServingJobSpec,
    local_server,
    require_executable,
    served_model_name,
    serving_sbatch_script,
    slurm_server,
    verify_served_model,
    vllm_command,
)
from radvlm_pipeline.layout import PROJECT_ROOT
from radvlm_pipeline.llm import LLMSettings
from radvlm_pipeline.llm.images import DATA_URL, FILE_URL, IMAGE_TRANSPORTS
from radvlm_pipeline.llm.settings import OPENAI
from resources.storage import PipelineStorage

LOCAL, SLURM, URL = "local", "slurm", "url"
MODES = (LOCAL, SLURM, URL)

MODE_ENV = "RADVLM_SERVING_MODE"
URL_ENV = "RADVLM_SERVING_URL"
API_KEY_ENV = "RADVLM_SERVING_API_KEY"
APPROVED_ENV = "RADVLM_SERVING_APPROVED_DATASETS"  # comma-separated dataset keys
VLLM_ARGS_ENV = "RADVLM_SERVING_VLLM_ARGS"  # e.g. "--dtype bfloat16 --max-model-len 8192"


class AnswerServer(ConfigurableResource):
    """Starts (or finds) a server for one partition's weights and says how hard to push it."""

    storage: PipelineStorage
    mode: str = Field(default=LOCAL, description=f"One of {MODES}.")
    url: str | None = Field(
        default=None, description="url mode: the server's base URL, e.g. http://gpu-node:8000/v1."
    )
    api_key: str | None = Field(default=None, description="url mode: set it with EnvVar, never as a literal.")
    vllm_executable: str = Field(default=VLLM, description="local and slurm modes: the vllm command.")
    vllm_args: list[str] = Field(
        default_factory=list,
        description="Extra `vllm serve` arguments: --dtype, --tensor-parallel-size, --max-model-len, ...",
    )
    startup_timeout_s: float = Field(default=1800.0, description="Loading a 7B model takes minutes.")
    poll_s: float = Field(default=2.0, description="How often a starting server is asked whether it is up.")
    concurrency: int = Field(default=64, description="Requests in flight; the server batches them.")
    timeout_s: float = Field(default=600.0, description="Per request: a long report on a busy server.")
    max_retries: int = Field(default=5, description="On 429, 5xx, timeouts, bad bodies.")
    image_transport: str = Field(
        default=DATA_URL,
        description=f"One of {IMAGE_TRANSPORTS}: base64 in the request (any server), or a file URL for a "
        "server on this filesystem (local mode, or url/slurm with shared storage).",
    )
    allowed_local_media_path: str | None = Field(
        default=None,
        description="file_url: the folder the server may read images from (default: the folder holding "
        "both the data root and the storage root).",
    )
    approved_credentialed_datasets: list[str] = Field(
        default_factory=list,
        description="Credentialed datasets whose images and questions this server may receive.",
    )
    slurm_gpus_per_node: int = Field(default=1)
    slurm_cpus_per_task: int = Field(default=8)
    slurm_time_limit: str = Field(default="04:00:00")
    slurm_partition: str | None = Field(default=None)
    slurm_account: str | None = Field(default=None)
    slurm_extra_sbatch_lines: list[str] = Field(default_factory=list, description='e.g. ["--qos=high"]')

    @classmethod
    def from_environment(cls, storage: PipelineStorage):
        """A vLLM process on this machine unless RADVLM_SERVING_MODE says otherwise. The environment's
        values are the defaults of the run config (``configure_at_launch``), so a run config that sets
        one field leaves the others as the environment says."""
        env = os.environ
        return cls.configure_at_launch(
            storage=storage,
            mode=env.get(MODE_ENV, LOCAL),
            url=env.get(URL_ENV) or None,
            api_key=EnvVar(API_KEY_ENV) if env.get(API_KEY_ENV) else None,
            vllm_args=env.get(VLLM_ARGS_ENV, "").split(),
            approved_credentialed_datasets=[
                key.strip() for key in env.get(APPROVED_ENV, "").split(",") if key.strip()
            ],
        )

    def describe(self) -> str:
        return {
            URL: f"the server at {self.url}",
            LOCAL: "vLLM started on this machine",
            SLURM: "vLLM as a Slurm job",
        }[self.mode]

    def client_settings(self) -> LLMSettings:
        """The LLM client's limits and approvals; the endpoint and decoding are set per step."""
        if self.mode not in MODES:
            raise ServingError(f"unknown answer server mode {self.mode!r}; expected one of {MODES}")
        return LLMSettings(
            backend=OPENAI,
            base_url=self.url if self.mode == URL else self.describe(),
            concurrency=self.concurrency,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            image_transport=self.image_transport,
            approved_credentialed_datasets=tuple(self.approved_credentialed_datasets),
        )

    def _media_root(self) -> Path | None:
        if self.image_transport != FILE_URL:
            return None
        if self.allowed_local_media_path:
            return Path(self.allowed_local_media_path).resolve()
        return Path(
            os.path.commonpath([self.storage.data_path.resolve(), self.storage.storage_path.resolve()])
        )

    @contextmanager
    def serve(
        self, model: str, weights_dir: Path, log: Callable[[str], None] = print
    ) -> Iterator[ServedEndpoint]:
        """A server answering for exactly ``weights_dir``, for the duration of the block."""
        expected = served_model_name(model, weights_dir)
        if self.mode == URL:
            if not self.url:
                raise ServingError(f"answer server mode 'url' needs a URL ({URL_ENV})")
            yield verify_served_model(self.url, self.api_key, expected, weights_dir)
            return
        executable = require_executable(self.vllm_executable)
        log_path = self.storage.layout.answers_dir(model) / "server.log"
        if self.mode == LOCAL:
            port = free_port()
            command = vllm_command(
                executable, weights_dir, expected, "127.0.0.1", port, self.vllm_args, self._media_root()
            )
            base_url = f"http://127.0.0.1:{port}/v1"
            log(f"starting {' '.join(command)} (log: {log_path})")
            with local_server(command, base_url, log_path, self.startup_timeout_s, self.poll_s):
                yield verify_served_model(base_url, None, expected, weights_dir)
            return
        job_dir = log_path.parent / "server-job"
        job_dir.mkdir(parents=True, exist_ok=True)
        spec = ServingJobSpec(
            job_name=f"radvlm-serve-{model}",
            command=vllm_command(
                executable, weights_dir, expected, "0.0.0.0", "$port", self.vllm_args, self._media_root()
            ),
            address_path=job_dir / "address",
            log_path=log_path,
            workdir=PROJECT_ROOT,
            gpus_per_node=self.slurm_gpus_per_node,
            cpus_per_task=self.slurm_cpus_per_task,
            time_limit=self.slurm_time_limit,
            partition=self.slurm_partition,
            account=self.slurm_account,
            extra_sbatch_lines=self.slurm_extra_sbatch_lines,
        )
        script_path = job_dir / "serve.sbatch"
        script_path.write_text(serving_sbatch_script(spec))
        api_key = secrets.token_urlsafe(24)  # vLLM reads VLLM_API_KEY; never in the script or a log
        with slurm_server(
            script_path,
            spec.address_path,
            log_path,
            api_key,
            self.startup_timeout_s,
            on_submitted=lambda job_id: log(f"submitted Slurm job {job_id}: {script_path}"),
            poll_s=self.poll_s,
            environment={"VLLM_API_KEY": api_key},
        ) as base_url:
            yield verify_served_model(base_url, api_key, expected, weights_dir)
