"""Generation: round-by-round batching with the model's own history, conversions, the stored outcome."""

from __future__ import annotations

import polars as pl
import pytest
from eval_fixtures import write_eval_sets

from radvlm_pipeline.evaluation.baselines import BASELINES, ORACLE
from radvlm_pipeline.evaluation.generation import (
    ANSWERS_SCHEMA,
    generate_answers,
    image_resolver,
    read_eval_set,
    read_generation_outcome,
    run_generation,
)
from radvlm_pipeline.layout import StorageLayout

pytestmark = pytest.mark.transformers


class EchoModel:
    """Answers "<question> #<round>" and records every batch it was asked."""

    def __init__(self):
        self.batches = []

    def answer(self, requests):
        self.batches.append(requests)
        return [f"{r.question} #{len(r.history)}" for r in requests]


def test_conversations_are_asked_round_by_round_with_the_models_own_answers(tmp_path):
    data_root, storage_root = tmp_path / "data", tmp_path / "storage"
    write_eval_sets(data_root, storage_root)
    frame = read_eval_set(storage_root, "conversation")  # 3 rounds and 2 rounds
    model = EchoModel()
    answers = generate_answers(
        frame,
        model,
        lambda task, raw, image: raw.upper(),
        image_resolver(data_root, storage_root),
        "echo",
        batch_size=1,
    )
    assert answers.schema == ANSWERS_SCHEMA
    assert [len(batch) for batch in model.batches] == [1, 1, 1, 1, 1]  # rounds 1, 1, 2, 2, 3
    third_round = model.batches[-1][0]
    assert third_round.history[1][1] == f"{third_round.history[1][0]} #1"  # its own earlier answer, raw
    assert not third_round.question.startswith("<image>") and third_round.image_path.is_file()
    lengths = answers["answers"].list.len().to_list()
    assert sorted(lengths) == [2, 3]
    assert all(text == text.upper() for texts in answers["answers"].to_list() for text in texts)


def test_run_generation_records_answers_and_unavailable_models(tmp_path):
    data_root, storage_root = tmp_path / "data", tmp_path / "storage"
    write_eval_sets(data_root, storage_root)
    outcome = run_generation(ORACLE, None, storage_root, data_root, max_samples=1)
    assert outcome.status == "generated" and set(outcome.tasks) == set(ORACLE.tasks)
    stored = pl.read_parquet(StorageLayout(storage_root).answers("oracle", "classification"))
    assert stored.height == 1 and stored["answers"][0].to_list() == stored["raw_answers"][0].to_list()

    missing = run_generation(BASELINES["maira2"], tmp_path / "nowhere", storage_root, data_root)
    assert missing.status == "not_available" and "no model folder" in missing.reason
    assert read_generation_outcome(storage_root, "maira2").reason == missing.reason


class ThreadRecorder(EchoModel):
    """An EchoModel that also notes how many torch threads it answered with."""

    def answer(self, requests):
        import torch

        self.threads = torch.get_num_threads()
        return super().answer(requests)


def test_every_set_is_answered_in_shared_batches_with_one_cpu_thread(tmp_path, monkeypatch):
    import torch

    data_root, storage_root = tmp_path / "data", tmp_path / "storage"
    write_eval_sets(data_root, storage_root)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = ThreadRecorder()
        outcome = run_generation(
            ORACLE, None, storage_root, data_root, batch_size=64, device="cpu", generator=model
        )
        assert model.threads == 1 and torch.get_num_threads() == 2  # one thread inside, restored after
    finally:
        torch.set_num_threads(threads_before)

    sets = {task: read_eval_set(storage_root, task) for task in ORACLE.tasks}
    # Round one asks every row of every set in one batch; later rounds only the conversations left.
    assert [len(batch) for batch in model.batches] == [sum(f.height for f in sets.values()), 3, 1]
    assert {request.task for request in model.batches[0]} == set(ORACLE.tasks)
    for task, frame in sets.items():
        stored = pl.read_parquet(StorageLayout(storage_root).answers("oracle", task))
        assert stored["id"].to_list() == frame["id"].to_list() and set(stored["task"]) == {task}
        assert outcome.tasks[task]["rows"] == frame.height
    assert read_generation_outcome(storage_root, "oracle").seconds == outcome.seconds >= 0


def test_evaluation_shows_a_sixteen_bit_png_as_training_does(tmp_path):
    """PadChest-GR's images are 16-bit PNGs: evaluation once converted them to RGB by clipping, so the
    model saw a white image where it had been trained on the rescaled one."""
    import numpy as np

    from radvlm_pipeline.evaluation import adapters
    from radvlm_pipeline.training import data
    from radvlm_pipeline.training.synthetic import write_image

    write_image(tmp_path / "x.png", seed=1, size=(60, 72), sixteen_bit=True)
    shown = np.asarray(adapters.open_rgb(tmp_path / "x.png"))
    trained = np.asarray(data.open_rgb(tmp_path / "x.png"))
    assert shown.min() < shown.max() and (shown == trained).all()
