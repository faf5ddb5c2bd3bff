"""The answer server's Slurm mode against a real single-node Slurm (tests/slurm/start_slurm.sh), with
``fake_vllm.py`` as the vllm the job runs: submission, the address the job writes, the per-job API key
handed over in the environment, the weights check, and the job cancelled when the step ends.

Where Slurm cannot be started (no root, no Debian packages), these tests are skipped with the reason.
"""

from __future__ import annotations

import re
import time

import openai
import pytest
from test_served_answers import local_answer_server, write_weights
from test_training_slurm import slurm  # noqa: F401  (the module fixture that starts Slurm)

from radvlm_pipeline.launch.commands import TERMINAL_STATES, job_outcome
from radvlm_pipeline.launch.serving import ServingError, served_model_name
from radvlm_pipeline.launch.slurm import job_record
from resources.storage import PipelineStorage

pytestmark = pytest.mark.slow


def slurm_answer_server(tmp_path, **overrides):
    storage = PipelineStorage(data_root=str(tmp_path / "data"), storage_root=str(tmp_path / "storage"))
    values = dict(
        mode="slurm", poll_s=0.5, slurm_gpus_per_node=0, slurm_cpus_per_task=1, slurm_time_limit="5:00"
    )
    return local_answer_server(storage, tmp_path, **(values | overrides))


def final_state(job_id: str) -> str:
    for _ in range(60):
        state, _ = job_outcome(job_record(job_id) or {"JobState": "GONE"})
        if state in TERMINAL_STATES or state == "GONE":
            return state
        time.sleep(0.5)
    return state


@pytest.mark.timeout(300)
def test_the_server_runs_as_a_slurm_job_behind_a_fresh_key_and_is_cancelled_after(tmp_path):
    weights = write_weights(tmp_path / "final")
    server = slurm_answer_server(tmp_path)
    lines = []
    with server.serve("all", weights, log=lines.append) as endpoint:
        assert endpoint.model == served_model_name("all", weights) and endpoint.api_key
        with pytest.raises(openai.AuthenticationError):  # the job's server wants the job's key
            openai.OpenAI(base_url=endpoint.base_url, api_key="wrong", max_retries=0).models.list()
        job_id = re.search(r"submitted Slurm job (\d+)", lines[0]).group(1)
        script = (
            tmp_path / "storage" / "evaluation" / "answers" / "all" / "server-job" / "serve.sbatch"
        ).read_text()
        assert endpoint.api_key not in script
    assert final_state(job_id) == "CANCELLED"


@pytest.mark.timeout(300)
def test_a_serving_job_that_dies_fails_with_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_EXIT", "2")  # sbatch hands the submitter's environment to the job
    server = slurm_answer_server(tmp_path)
    with pytest.raises(ServingError, match=r"Slurm job \d+ ended FAILED before serving(.|\n)*cannot load"):
        with server.serve("all", write_weights(tmp_path / "final")):
            pass
