"""The real training script on the tiny model: in-process, and through the asset with each local launcher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, materialize
from training_helpers import write_sample_corpus

from assets.finetune import build_finetune_assets
from radvlm_pipeline.training.base_model import prepare_base_model
from radvlm_pipeline.training.config import TrainConfig
from radvlm_pipeline.training.recipes import recipe_shard_files
from radvlm_pipeline.training.report import read_metrics
from radvlm_pipeline.training.train import train
from resources.launchers import LocalTrainingLauncher
from resources.storage import PipelineStorage

pytestmark = pytest.mark.transformers

FAST_LEARNING = {"lr_vision": 3e-3, "lr_language": 3e-3}  # the paper's rates barely move a random toy


@pytest.fixture()
def roots(tmp_path) -> tuple[Path, Path]:
    storage, data = tmp_path / "storage", tmp_path / "data"
    write_sample_corpus(storage, data, repeat=2)  # 12 rows, 4 tasks
    return storage, data


def run_config(roots, model_dir, out: Path, **settings) -> TrainConfig:
    storage, data = roots
    return TrainConfig(
        model_path=str(model_dir),
        output_dir=str(out),
        data_root=str(data),
        storage_root=str(storage),
        shard_files=[str(f) for f in recipe_shard_files(storage, "all")],
        **{**FAST_LEARNING, **settings},
    )


@pytest.mark.slow
def test_loss_goes_down_and_a_resumed_run_ends_with_the_same_weights(roots, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    settings = dict(micro_batch_size=4, global_batch_size=4, epochs=4, save_every_steps=6)  # 3 steps an epoch
    # Two spawned DataLoader workers here, none in the resumed run: the batch order must not differ.
    full = train(run_config(roots, tiny_model_dir, tmp_path / "full", num_workers=2, **settings))
    losses = [m["loss"] for m in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    assert len(losses) == 12 and full["steps"] == 12
    assert losses[-1] < 0.9 * losses[0]  # the same 12 rows seen four times: the model starts fitting them

    # A run that stopped after its step-6 checkpoint resumes there and ends identical.
    interrupted = tmp_path / "interrupted"
    shutil.copytree(tmp_path / "full", interrupted)
    shutil.rmtree(interrupted / "final")
    resumed = train(run_config(roots, tiny_model_dir, interrupted, **settings))
    assert resumed["resumed_from_step"] == 6 and resumed["steps_this_run"] == 6
    assert [m["step"] for m in read_metrics(interrupted / "metrics.jsonl")] == list(range(1, 13))
    weights = load_file(tmp_path / "full" / "final" / "model.safetensors")
    again = load_file(interrupted / "final" / "model.safetensors")
    assert all((weights[k] == again[k]).all() for k in weights)

    # Other settings never resume someone else's checkpoint.
    other = train(run_config(roots, tiny_model_dir, interrupted, **{**settings, "seed": 1}))
    assert other["resumed_from_step"] == 0
    hashes = {
        json.loads(m.read_text())["config_hash"]
        for m in (interrupted / "checkpoints").glob("*/checkpoint.json")
    }
    assert hashes == {other["config_hash"]}  # the other settings' checkpoints were cleared, not mixed in


LAUNCHERS = [
    pytest.param("python", 1, None, id="single-process"),
    pytest.param("torchrun", 2, None, id="torchrun-x2-ddp"),
    # First run on a machine JIT-compiles DeepSpeed's shared-memory op (~55 s), cached afterwards.
    pytest.param("deepspeed", 2, "zero2", id="deepspeed-x2-zero2"),
    pytest.param("inprocess", 1, None, id="in-the-step-process"),
]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode, processes, zero", LAUNCHERS)
def test_finetuned_model_asset_trains_through_each_local_launcher(
    roots, tiny_model_dir, mode, processes, zero
):
    storage, data = roots
    base_model, finetuned_model = build_finetune_assets(AssetKey("corpus"))
    run_config = {
        "ops": {
            "finetuned_model": {
                "config": {
                    **FAST_LEARNING,
                    "micro_batch_size": 2,
                    "global_batch_size": 2 * processes,
                    "epochs": 2,
                    "deepspeed": zero,
                }
            },
        }
    }
    resources = {
        "storage": PipelineStorage(data_root=str(data), storage_root=str(storage)),
        "training_launcher": LocalTrainingLauncher(mode=mode, processes=processes),
    }
    with DagsterInstance.ephemeral() as instance:
        if mode == "python":  # the base_model asset once; the other modes start from the same tiny model
            assert materialize([base_model], resources=resources, instance=instance).success
        else:
            prepare_base_model(storage, str(tiny_model_dir))
        result = materialize(
            [finetuned_model],
            resources=resources,
            instance=instance,
            partition_key="all",
            run_config=run_config,
        )
        assert result.success
        metadata = result.asset_materializations_for_node("finetuned_model")[0].metadata

    steps = 12 * 2 // (2 * processes)
    assert metadata["recipe"].value == "all"
    assert metadata["rows_per_task"].value == {
        "classification": 4,
        "conversation": 2,
        "phrase_grounding": 2,
        "report_generation": 4,
    }
    assert metadata["steps"].value == steps and metadata["processes"].value == processes
    assert metadata["profile"].value == "paper" and metadata["gradient_accumulation_steps"].value == 1
    assert metadata["settings"].value["global_batch_size"] == 2 * processes
    assert metadata["tokens_per_s"].value > 0 and metadata["wall_time_s"].value > 0
    assert metadata["loss_curve"].value.startswith("![loss curve](data:image/png;base64,")
    final = Path(metadata["output_path"].value)
    assert final == storage / "models" / "all" / "final"
    losses = [m["loss"] for m in read_metrics(storage / "models" / "all" / "metrics.jsonl")]
    assert len(losses) == steps and losses[-1] < losses[0]
    assert metadata["final_loss"].value == pytest.approx(losses[-1])

    from transformers import LlavaOnevisionForConditionalGeneration

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(final)
    assert model.num_parameters() > 0
    assert json.loads((final / "training_summary.json").read_text())["steps"] == steps
