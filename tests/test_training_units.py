"""Fast checks of the training pieces: label masking, batch planning, recipes, launch commands.

Tests marked ``transformers`` also run under transformers 5 (``make test-tf5``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from training_helpers import write_sample_corpus

from radvlm_pipeline.images import open_rgb
from radvlm_pipeline.launch.commands import (
    SlurmJobSpec,
    job_outcome,
    local_command,
    parse_job_record,
    parse_sbatch_job_id,
    sbatch_script,
)
from radvlm_pipeline.schema import TASKS
from radvlm_pipeline.training.config import DEMO, PAPER, TrainConfig, profile_settings
from radvlm_pipeline.training.data import BatchPlan, conversation_lengths, micro_batch_indices
from radvlm_pipeline.training.processing import IGNORE_INDEX, collate, encode_conversation, to_messages
from radvlm_pipeline.training.recipes import RECIPES, recipe_shard_files, rows_per_task
from radvlm_pipeline.training.synthetic import write_image

MULTI_TURN = [
    {"from": "human", "value": "<image>\nWhat view is this?"},
    {"from": "gpt", "value": "A frontal PA view."},
    {"from": "human", "value": "Is there an effusion?"},
    {"from": "gpt", "value": "Yes, at [0.55, 0.60, 0.90, 0.95]."},
]


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from radvlm_pipeline.training.processing import load_processor

    return load_processor(tiny_model_dir)


def labelled_text(processor, input_ids, labels) -> str:
    return processor.tokenizer.decode([t for t, l in zip(input_ids, labels) if l != IGNORE_INDEX])


@pytest.mark.transformers
def test_only_assistant_answers_carry_labels_in_every_round(processor):
    sample = encode_conversation(processor, MULTI_TURN)
    assert labelled_text(processor, sample.input_ids, sample.labels) == (
        "A frontal PA view.<|im_end|>Yes, at [0.55, 0.60, 0.90, 0.95].<|im_end|>"
    )
    # Labels equal the input ids where set (the model shifts them itself).
    assert all(l in (IGNORE_INDEX, t) for t, l in zip(sample.input_ids, sample.labels))
    unlabelled = processor.tokenizer.decode(
        [t for t, l in zip(sample.input_ids, sample.labels) if l == IGNORE_INDEX]
    )
    assert "What view is this?" in unlabelled and "Is there an effusion?" in unlabelled
    assert unlabelled.count("<|im_start|>assistant") == 2


@pytest.mark.transformers
def test_batch_labels_survive_image_expansion_and_padding(processor):
    from PIL import Image

    images = [Image.new("RGB", (80, 64), 100), Image.new("RGB", (64, 140), 30)]
    batch = collate(processor, [MULTI_TURN, MULTI_TURN[:2]], images, max_length=4096)
    image_id = processor.image_token_id
    for row, expected in enumerate(
        [
            "A frontal PA view.<|im_end|>Yes, at [0.55, 0.60, 0.90, 0.95].<|im_end|>",
            "A frontal PA view.<|im_end|>",
        ]
    ):
        ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
        assert labelled_text(processor, ids, labels) == expected
        image_positions = [i for i, t in enumerate(ids) if t == image_id]
        assert len(image_positions) > 1  # the placeholder was expanded into the image's feature tokens
        assert all(labels[i] == IGNORE_INDEX for i in image_positions)
        padding = [i for i, m in enumerate(batch["attention_mask"][row].tolist()) if m == 0]
        assert all(labels[i] == IGNORE_INDEX for i in padding)


@pytest.mark.transformers
def test_rows_encoded_alone_pad_into_the_processors_own_batch(processor):
    """Encoding rows one by one (so a run can keep them) then padding gives the processor's batch."""
    import torch
    from PIL import Image

    from radvlm_pipeline.training.processing import encode_conversation

    images = [Image.new("RGB", (80, 64), 100), Image.new("RGB", (64, 140), 30)]
    conversations = [MULTI_TURN[:2], MULTI_TURN]
    batch = collate(processor, conversations, images, max_length=4096)
    texts = [encode_conversation(processor, c).text for c in conversations]
    reference = processor(text=texts, images=images, padding=True, return_tensors="pt")
    assert set(batch) == {*reference, "labels"}
    for key, value in reference.items():
        assert torch.equal(batch[key], value), key


@pytest.mark.transformers
def test_cached_rows_give_the_same_batches_and_are_encoded_once(tiny_model_dir, tmp_path, monkeypatch):
    import torch

    from radvlm_pipeline.training import data

    image = tmp_path / "data" / "mimic_cxr" / "a.png"
    image.parent.mkdir(parents=True)
    write_image(image, seed=0, size=(64, 64), sixteen_bit=False)
    rows = pl.DataFrame(
        {
            "id": [f"r{i}" for i in range(6)],
            "task": ["conversation"] * 6,
            "image_dataset": ["mimic_cxr"] * 6,
            "image_path": ["a.png"] * 6,
            "conversation": [MULTI_TURN[: 2 + 2 * (i % 2)] for i in range(6)],
        }
    )
    encoded = []
    monkeypatch.setattr(data, "image_root", lambda dataset, data_root, storage_root: data_root / dataset)
    original = data.encode_row
    monkeypatch.setattr(data, "encode_row", lambda *args: encoded.append(1) or original(*args))
    plan = BatchPlan(6, 1, 0, 2, seed=0)

    def batches(cache: bool) -> list[dict]:
        encoded.clear()
        found = list(
            data.CorpusBatches(
                rows, plan, 0, 9, str(tiny_model_dir), 4096, tmp_path / "data", tmp_path, cache
            )
        )
        return found, len(encoded)

    (plain, plain_encodings), (cached, cached_encodings) = batches(False), batches(True)
    assert (plain_encodings, cached_encodings) == (18, 6)  # three epochs of six rows; each row once
    assert all(torch.equal(a[key], b[key]) for a, b in zip(plain, cached) for key in a)


def collate_and_reference(processor):
    """One conversation through collate and through the processor's own chat-template tokenization."""
    from PIL import Image

    image = Image.new("RGB", (80, 64), 100)
    messages = to_messages(MULTI_TURN)
    messages[0]["content"][0]["image"] = image
    reference = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt"
    )
    return collate(processor, [MULTI_TURN], [image], max_length=4096), reference


@pytest.mark.transformers
def test_batch_ids_are_the_processors_own_tokenization(processor):
    batch, reference = collate_and_reference(processor)
    # The same text and the same image expansion as transformers' chat-template path.
    assert batch["input_ids"].tolist() == reference["input_ids"].tolist()
    assert batch["attention_mask"].tolist() == reference["attention_mask"].tolist()


@pytest.mark.transformers
def test_labels_are_the_processors_assistant_mask_plus_each_end_of_turn(processor):
    """The spans processing.py finds, against transformers' own assistant mask where it has one.

    transformers 5.24 marks each answer's text but not the <|im_end|> closing it, which the model must
    learn to say as well; 4.57 and 5.17 return all zeros once <image> is expanded, which is why
    processing.py computes the spans itself."""
    import transformers

    batch, reference = collate_and_reference(processor)
    mask = [bool(m) for m in reference["assistant_masks"][0]]
    if not any(mask):
        pytest.skip(
            f"transformers {transformers.__version__} loses the assistant mask once <image> is expanded"
        )
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    labelled = {i for i, label in enumerate(labels) if label != IGNORE_INDEX}
    masked = {i for i, m in enumerate(mask) if m}
    end_of_turn = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert masked < labelled
    assert [(ids[i], i - 1 in masked) for i in sorted(labelled - masked)] == [(end_of_turn, True)] * 2


@pytest.mark.transformers
def test_truncation_refuses_to_cut_image_tokens(processor):
    from PIL import Image

    with pytest.raises(ValueError, match="cut image tokens"):
        collate(processor, [MULTI_TURN], [Image.new("RGB", (64, 64))], max_length=8)


@pytest.mark.parametrize(
    "turns, message",
    [
        (MULTI_TURN[:1], "pairs"),
        ([MULTI_TURN[1], MULTI_TURN[0]], "expected 'human'"),
        ([{"from": "human", "value": "no image"}, MULTI_TURN[1]], "must start with"),
    ],
)
def test_malformed_conversations_are_rejected(turns, message):
    with pytest.raises(ValueError, match=message):
        to_messages(turns)


def test_batch_plan_splits_a_seeded_shuffle_exactly_across_ranks():
    plans = [BatchPlan(num_rows=23, world_size=2, rank=r, micro_batch_size=3, seed=7) for r in range(2)]
    assert plans[0].batches_per_epoch == 3  # 23 // (2 * 3); the 5 leftover rows are dropped
    epoch0 = [p.batches(0) for p in plans]
    rows = np.concatenate([b.ravel() for b in epoch0])
    assert len(set(rows.tolist())) == 18  # disjoint across ranks
    assert np.array_equal(plans[1].batches(0), BatchPlan(23, 2, 1, 3, 7).batches(0))  # deterministic
    assert not np.array_equal(plans[0].batches(0), plans[0].batches(1))  # reshuffled per epoch
    # Resuming at micro-batch 4 continues in epoch 1 at its second batch.
    numbers = list(micro_batch_indices(plans[0], start=4, total=6))
    assert [n for n, _ in numbers] == [4, 5]
    assert np.array_equal(numbers[0][1], plans[0].batches(1)[1])


def test_length_grouped_batches_keep_the_epoch_and_pad_less():
    lengths = np.random.default_rng(0).integers(10, 1000, size=200)
    grouped = [BatchPlan(200, 2, rank, 4, seed=3, lengths=lengths) for rank in range(2)]
    plain = BatchPlan(200, 2, 0, 4, seed=3)
    epoch = np.concatenate([plan.batches(0) for plan in grouped])
    assert sorted(epoch.ravel().tolist()) == list(range(200))  # every row once, across the ranks
    assert np.array_equal(grouped[0].batches(0), BatchPlan(200, 2, 0, 4, 3, lengths).batches(0))
    assert not np.array_equal(grouped[0].batches(0), grouped[0].batches(1))

    def padded(batches):  # tokens a batch pads to, summed over the epoch
        return int(sum(lengths[batch].max() * len(batch) for batch in batches))

    assert padded(grouped[0].batches(0)) < 0.8 * padded(plain.batches(0))
    # The ranks' batches of a round come from neighbouring places in one sorted run: near in length.
    first, second = (lengths[plan.batches(0)[0]].max() for plan in grouped)
    assert abs(int(first) - int(second)) < 100


def test_conversation_lengths_count_every_turn():
    rows = pl.DataFrame(
        {"conversation": [[{"from": "human", "value": "ab"}, {"from": "gpt", "value": "cde"}]]}
    )
    assert conversation_lengths(rows).tolist() == [5]


def test_recipes_cover_every_task_and_select_their_shards(tmp_path):
    assert set(RECIPES["all"]) == set(TASKS)
    single = {task for name, tasks in RECIPES.items() if name != "all" for task in tasks}
    assert single == set(TASKS)
    write_sample_corpus(tmp_path / "storage", tmp_path / "data")
    files = recipe_shard_files(tmp_path / "storage", "conversation")
    assert [f.parent.name for f in files] == ["conversation__mimic_cxr"]
    assert rows_per_task(recipe_shard_files(tmp_path / "storage", "all")) == {
        "classification": 2,
        "conversation": 1,
        "phrase_grounding": 1,
        "report_generation": 2,
    }


def test_sixteen_bit_png_becomes_rgb(tmp_path):
    write_image(tmp_path / "x.png", seed=1, size=(60, 72), sixteen_bit=True)
    image = open_rgb(tmp_path / "x.png")
    assert image.mode == "RGB" and image.size == (60, 72)
    assert image.getextrema()[0] == (0, 255)  # rescaled to the full 8-bit range


def test_local_commands():
    config = Path("/runs/a.yaml")
    assert local_command("python", 1, config, "py") == [
        "py",
        "-m",
        "radvlm_pipeline.training.train",
        "--config",
        "/runs/a.yaml",
    ]
    torchrun = local_command("torchrun", 2, config, "py")
    assert torchrun[:5] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    deepspeed = local_command("deepspeed", 2, config, "py", master_port=29555)
    assert deepspeed[:6] == [
        "py",
        "-m",
        "deepspeed.launcher.runner",
        "--num_gpus=2",
        "--master_port=29555",
        "--module",
    ]
    with pytest.raises(ValueError):
        local_command("python", 2, config, "py")


def test_sbatch_script_runs_one_torchrun_per_node_with_a_shared_rendezvous(tmp_path):
    script = sbatch_script(
        SlurmJobSpec(
            job_name="radvlm-all",
            nodes=4,
            processes_per_node=8,
            gpus_per_node=8,
            cpus_per_task=32,
            time_limit="12:00:00",
            python="/env/bin/python",
            workdir=tmp_path,
            config_path=tmp_path / "c.yaml",
            log_path=tmp_path / "slurm.log",
            environment={"DAGSTER_PIPES_CONTEXT": "abc def"},
            partition="gpu",
            extra_sbatch_lines=["#SBATCH --qos=high"],
        )
    )
    for line in [
        "#SBATCH --nodes=4",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --qos=high",
        "export DAGSTER_PIPES_CONTEXT='abc def'",
    ]:
        assert line in script.splitlines()
    srun = script.splitlines()[-1]
    assert srun.startswith("srun --kill-on-bad-exit=1 /env/bin/python -m torch.distributed.run")
    assert '--nnodes="$SLURM_NNODES"' in srun and "--nproc_per_node=8" in srun
    assert '--rdzv_endpoint="$head_node:$rendezvous_port"' in srun


def test_slurm_output_parsing():
    assert parse_sbatch_job_id("42;cluster\n") == "42"
    record = parse_job_record("JobId=42 JobName=x JobState=CANCELLED Reason=None ExitCode=0:15 NodeList=n1")
    assert job_outcome(record) == ("CANCELLED", 0)
    assert job_outcome(parse_job_record("JobId=7 JobState=FAILED ExitCode=3:0")) == ("FAILED", 3)


def test_each_corpus_partition_feeds_all_and_its_task_family():
    from dagster import AssetKey, MultiPartitionKey

    from assets.finetune import corpus_dependency, recipe_for_corpus_partition

    assert recipe_for_corpus_partition("abnormality_detection__vindr_cxr") == ["all", "abnormality_grounding"]
    assert recipe_for_corpus_partition("grounded_conversation__ms_cxr") == ["all", "conversation"]
    assert recipe_for_corpus_partition(
        MultiPartitionKey({"task": "classification", "source": "chexpert"})
    ) == [
        "all",
        "classification",
    ]
    mapping = corpus_dependency(
        AssetKey("corpus"), ["report_generation__mimic_cxr", "eval__mimic_cxr"]
    ).partition_mapping
    assert mapping.downstream_partition_keys_by_upstream_partition_key == {
        "report_generation__mimic_cxr": {"all", "report_generation"},
    }


@pytest.mark.transformers
def test_base_model_is_a_configured_directory_or_the_built_tiny_model(tmp_path, tiny_model_dir):
    from radvlm_pipeline.training.base_model import current_base_model, prepare_base_model

    configured = prepare_base_model(tmp_path, str(tiny_model_dir))
    assert configured["path"] == str(tiny_model_dir) and not configured["built_tiny_model"]
    assert current_base_model(tmp_path) == configured
    with pytest.raises(FileNotFoundError, match="config.json"):
        prepare_base_model(tmp_path, str(tmp_path / "nowhere"))
    built = prepare_base_model(tmp_path)
    assert built["path"] == str(tmp_path / "models" / "base" / "tiny-llava-onevision")
    assert built["fingerprint"] == configured["fingerprint"]  # same builder, same seed: the same model


def test_a_run_states_its_global_batch_and_the_accumulation_follows_from_the_processes():
    import dataclasses

    from radvlm_pipeline.training.distributed import deepspeed_settings

    config = TrainConfig("model", "out", [], "data", "storage", micro_batch_size=4)
    assert (config.global_batch_size, config.max_length) == (256, 32768)  # the paper's run
    assert [config.accumulation_steps(processes) for processes in (1, 8, 64)] == [64, 8, 1]
    with pytest.raises(ValueError, match="not a multiple"):
        config.accumulation_steps(128)  # 4 x 128 processes is more than 256
    with pytest.raises(ValueError, match="not a multiple"):
        dataclasses.replace(config, micro_batch_size=3).accumulation_steps(1)
    zero = deepspeed_settings(dataclasses.replace(config, deepspeed="zero2"), world_size=8, bf16=True)
    assert (zero["train_batch_size"], zero["gradient_accumulation_steps"]) == (256, 8)
    assert zero["train_micro_batch_size_per_gpu"] == 4


def test_a_profile_sets_values_on_the_paper_defaults_and_explicit_settings_win():
    from assets.finetune import FinetuneConfig

    paper = TrainConfig("model", "out", [], "data", "storage")
    demo = TrainConfig("model", "out", [], "data", "storage", **profile_settings(DEMO))
    assert FinetuneConfig().settings() == {"profile": PAPER}  # a real run keeps the paper's values
    assert demo.profile == DEMO and demo.lr_language > paper.lr_language and demo.epochs > paper.epochs
    assert demo.global_batch_size < paper.global_batch_size and demo.max_length < paper.max_length
    chosen = FinetuneConfig(profile=DEMO, lr_language=1e-4, seed=3).settings()
    assert chosen == {**profile_settings(DEMO), "lr_language": 1e-4, "seed": 3}
    # The profile names where the values came from; the weights depend on the values alone.
    relabelled = TrainConfig(
        "model", "out", [], "data", "storage", **{**profile_settings(DEMO), "profile": PAPER}
    )
    assert relabelled.config_hash() == demo.config_hash() != paper.config_hash()
    with pytest.raises(ValueError, match="unknown training profile"):
        profile_settings("fast")


def test_rows_that_do_not_fill_one_global_batch_fail_before_the_model_loads(tmp_path):
    from radvlm_pipeline.training.train import train

    storage, data = tmp_path / "storage", tmp_path / "data"
    files = write_sample_corpus(storage, data)  # 6 rows
    config = TrainConfig(
        str(tmp_path / "no-model-here"),
        str(tmp_path / "run"),
        [str(f) for f in files],
        str(data),
        str(storage),
        global_batch_size=8,
    )
    with pytest.raises(ValueError, match="6 training rows do not fill one global batch of 8"):
        train(config)
