"""The Slurm launcher against a real single-node Slurm (Debian's slurm-wlm), started by tests/slurm/start_slurm.sh.

Where Slurm cannot be started (no root, no Debian packages), these tests are skipped with the reason.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, materialize
from training_helpers import write_sample_corpus

from assets.finetune import build_finetune_assets
from radvlm_pipeline.launch.commands import TERMINAL_STATES, job_outcome
from radvlm_pipeline.launch.slurm import job_record, run_job
from radvlm_pipeline.training.base_model import prepare_base_model
from radvlm_pipeline.training.report import read_metrics
from resources.launchers import SlurmTrainingLauncher
from resources.storage import PipelineStorage

START_SCRIPT = Path(__file__).parent / "slurm" / "start_slurm.sh"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def slurm():
    try:
        started = subprocess.run(["bash", str(START_SCRIPT)], capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.skip("Slurm did not start within 240 s")
    if started.returncode != 0:
        pytest.skip(
            f"cannot start a single-node Slurm here: {(started.stderr or started.stdout).strip()[-400:]}"
        )


def batch_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "job.sbatch"
    script.write_text(f"#!/bin/bash\n#SBATCH --output={tmp_path / 'job.log'}\n#SBATCH --time=5\n{body}\n")
    return script


def test_a_failing_job_reports_its_state_and_exit_code(tmp_path):
    lines = []
    _, state, exit_code = run_job(
        batch_script(tmp_path, "echo before failing; exit 3"),
        tmp_path / "job.log",
        lines.append,
        poll_seconds=0.5,
    )
    assert (state, exit_code) == ("FAILED", 3)
    assert "before failing" in lines


def test_the_job_is_cancelled_when_the_caller_stops_waiting(tmp_path):
    submitted = []

    def interrupt_on_start(line: str) -> None:
        if line == "started":
            raise KeyboardInterrupt  # what a terminated Dagster run raises in the step

    with pytest.raises(KeyboardInterrupt):
        run_job(
            batch_script(tmp_path, "echo started; sleep 120"),
            tmp_path / "job.log",
            interrupt_on_start,
            on_submitted=submitted.append,
            poll_seconds=0.5,
        )
    for _ in range(60):
        state, _ = job_outcome(job_record(submitted[0]))
        if state in TERMINAL_STATES:
            break
        time.sleep(0.5)
    assert state == "CANCELLED"


@pytest.mark.timeout(400)
def test_finetuned_model_asset_trains_as_a_slurm_job_with_two_processes(tmp_path):
    storage, data = tmp_path / "storage", tmp_path / "data"
    write_sample_corpus(storage, data, repeat=4)
    base_model, finetuned_model = build_finetune_assets(AssetKey("corpus"))
    resources = {
        "storage": PipelineStorage(data_root=str(data), storage_root=str(storage)),
        "training_launcher": SlurmTrainingLauncher(
            nodes=1, processes_per_node=2, cpus_per_task=2, time_limit="10:00", poll_seconds=1
        ),
    }
    run_config = {
        "ops": {
            "finetuned_model": {
                "config": {"micro_batch_size": 1, "global_batch_size": 2, "lr_language": 1e-3}
            }
        }
    }
    with DagsterInstance.ephemeral() as instance:
        assert materialize([base_model], resources=resources, instance=instance).success
        result = materialize(
            [finetuned_model],
            resources=resources,
            instance=instance,
            partition_key="conversation",
            run_config=run_config,
        )
        assert result.success
        metadata = result.asset_materializations_for_node("finetuned_model")[0].metadata
        logs = [event.message for event in instance.all_logs(result.run_id) if event.message]

    # The conversation recipe trains on the 4 multi-turn rows only: 2 steps of one row per process.
    assert metadata["recipe"].value == "conversation"
    assert metadata["rows_per_task"].value == {"conversation": 4}
    assert metadata["processes"].value == 2 and metadata["steps"].value == 2
    assert metadata["slurm_job_id"].value.isdigit()
    assert metadata["launcher"].value == "slurm 1 node(s) x 2 process(es)"
    assert any(message.startswith("[slurm] job ") for message in logs)  # the batch log streamed into the run
    assert any(
        "recipe=conversation profile=paper rows=4 processes=2" in message for message in logs
    )  # Pipes log from rank 0
    metrics = read_metrics(storage / "models" / "conversation" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, metadata["steps"].value + 1))
    assert (Path(metadata["output_path"].value) / "model.safetensors").exists()


@pytest.mark.timeout(300)
def test_a_failed_training_job_fails_the_materialization_with_its_log(tmp_path, tiny_model_dir):
    storage, data = tmp_path / "storage", tmp_path / "data"
    write_sample_corpus(storage, data)
    prepare_base_model(storage, str(tiny_model_dir))
    _, finetuned_model = build_finetune_assets(AssetKey("corpus"))
    resources = {
        "storage": PipelineStorage(data_root=str(data), storage_root=str(storage)),
        # A Python that cannot start: the job fails before the training ever opens Pipes.
        "training_launcher": SlurmTrainingLauncher(
            cpus_per_task=1, poll_seconds=0.5, python_executable="/nonexistent/python"
        ),
    }
    result = materialize([finetuned_model], resources=resources, partition_key="all", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "ended FAILED with exit code" in failure.event_specific_data.error.message
    assert failure.event_specific_data.user_failure_data.metadata["log"].value.endswith("slurm.log")
