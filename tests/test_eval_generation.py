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
