"""Dagster resources, chosen per environment at the edge.

``build_resources`` is the one place that decides which implementation each resource key gets, from
environment variables, so assets never know whether they run on a laptop with the sample or on a cluster:
- ``storage``: data root and storage root (RADVLM_DATA_ROOT, RADVLM_STORAGE_ROOT);
- ``llm``: the offline rules unless RADVLM_LLM_BACKEND names an endpoint (see resources/llm.py);
- ``training_launcher``: a local subprocess (python / torchrun / deepspeed) unless
  RADVLM_TRAINING_LAUNCHER=slurm, with the Slurm geometry from RADVLM_SLURM_* variables;
- ``answer_server``: the server ``eval_answers`` uses with backend ``served``: vLLM started on this
  machine unless RADVLM_SERVING_MODE says slurm or url (see resources/serving.py).
"""

from __future__ import annotations

import os

from resources.launchers import LocalTrainingLauncher, SlurmTrainingLauncher, TrainingLauncher
from resources.llm import LLMResource
from resources.serving import AnswerServer
from resources.storage import PipelineStorage

LAUNCHER_ENV = "RADVLM_TRAINING_LAUNCHER"


def training_launcher_from_environment(default_mode: str = "python") -> TrainingLauncher:
    """The launcher RADVLM_TRAINING_* variables describe; ``default_mode`` where they name no local mode
    (the demo trains in its own process: ``inprocess``)."""
    env = os.environ
    if env.get(LAUNCHER_ENV, "local") == "slurm":
        return SlurmTrainingLauncher(
            nodes=int(env.get("RADVLM_SLURM_NODES", "1")),
            processes_per_node=int(env.get("RADVLM_SLURM_PROCESSES_PER_NODE", "1")),
            gpus_per_node=int(env.get("RADVLM_SLURM_GPUS_PER_NODE", "0")),
            partition=env.get("RADVLM_SLURM_PARTITION") or None,
            account=env.get("RADVLM_SLURM_ACCOUNT") or None,
            time_limit=env.get("RADVLM_SLURM_TIME_LIMIT", "12:00:00"),
        )
    return LocalTrainingLauncher(
        mode=env.get("RADVLM_TRAINING_MODE", default_mode),
        processes=int(env.get("RADVLM_TRAINING_PROCESSES", "1")),
    )


def build_resources() -> dict[str, object]:
    storage = PipelineStorage.from_environment()
    return {
        "storage": storage,
        "llm": LLMResource.from_environment(storage),
        "training_launcher": training_launcher_from_environment(),
        "answer_server": AnswerServer.from_environment(storage),
    }
