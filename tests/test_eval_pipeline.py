"""The evaluation assets end to end in Dagster: a tiny fine-tuned model, the oracle and a baseline without
weights, GREEN and the judge through the real openai SDK against a local OpenAI-compatible server."""

from __future__ import annotations

import re

import polars as pl
import pytest
from dagster import materialize
from eval_fixtures import build_fake_radgraph_xl, write_eval_sets
from fake_openai_server import FakeOpenAI

from assets.evaluation import eval_answers, results_tables, task_evaluation_assets
from radvlm_pipeline.datasets import DATASETS
from radvlm_pipeline.evaluation.report_generation import GREEN_ERROR_CATEGORIES
from radvlm_pipeline.evaluation.scoring import read_task_evaluation
from resources.llm import LLMResource
from resources.serving import AnswerServer
from resources.storage import PipelineStorage


def judge_responder(body: dict) -> str:
    """GREEN: no error when candidate == reference; the judge: 10 when every answer is the expected one."""
    user = body["messages"][-1]["content"]
    if "Candidate report:" in user:
        reference = user.split("Reference report:\n", 1)[1].split("\n\nCandidate report:", 1)[0]
        candidate = user.split("Candidate report:\n", 1)[1].split("\n\nReply in exactly", 1)[0]
        errors = 0 if candidate == reference else 1
        lines = "\n".join(
            f"({l}) {c}: {errors if l == 'a' else 0}." for l, c in zip("abcdef", GREEN_ERROR_CATEGORIES)
        )
        return (
            f"[Explanation]:\nCompared.\n\n[Clinically Significant Errors]:\n{lines}\n\n"
            f"[Clinically Insignificant Errors]:\nNo errors.\n\n[Matched Findings]:\n2. a; b"
        )
    expected = re.findall(r"Expected answer: (.*)", user)
    generated = re.findall(r"Generated answer: (.*)", user)
    return f"Each round compared.\nOverall score: {10 if expected == generated else 3}"


@pytest.mark.slow
def test_evaluation_assets_end_to_end(tmp_path):
    from radvlm_pipeline.training.tiny_model import build_model_directory

    data_root, storage_root = tmp_path / "data", tmp_path / "storage"
    write_eval_sets(data_root, storage_root)
    build_model_directory(storage_root / "models" / "all" / "final")
    storage = PipelineStorage(data_root=str(data_root), storage_root=str(storage_root))
    radgraph_dir = build_fake_radgraph_xl(tmp_path / "radgraph")
    generation_config = {
        "ops": {
            "eval_answers": {"config": {"max_new_tokens": 8, "batch_size": 4}},
            "eval_report_generation": {"config": {"radgraph_dir": str(radgraph_dir)}},
        }
    }

    with FakeOpenAI(responder=judge_responder) as server:
        llm = LLMResource(
            storage=storage,
            backend="openai",
            base_url=server.base_url,
            model="judge-model",
            api_key="test-key",
            approved_credentialed_datasets=list(DATASETS),
        )
        resources = {"storage": storage, "llm": llm, "answer_server": AnswerServer(storage=storage)}
        for model in ("oracle", "all", "chexagent"):
            assert materialize(
                [eval_answers, *task_evaluation_assets],
                partition_key=model,
                resources=resources,
                run_config=generation_config,
            ).success
        calls = len(server.chat_requests)
        # Unchanged answers: scoring again is served by the LLM cache, not the endpoint.
        judged = [
            a
            for a in task_evaluation_assets
            if a.key.path[-1] in ("eval_report_generation", "eval_conversation")
        ]
        assert materialize(
            judged,
            partition_key="oracle",
            resources=resources,
            selection=judged,
            run_config={
                "ops": {"eval_report_generation": generation_config["ops"]["eval_report_generation"]}
            },
        ).success
        assert len(server.chat_requests) == calls > 0
        result = materialize([results_tables], resources=resources)
    assert result.success

    def metric(task, model, name):
        return read_task_evaluation(storage_root, task, model).metric(name).value

    # The oracle calibrates every metric that allows 100.
    assert metric("report_generation", "oracle", "Rouge-L") == 100.0
    assert metric("report_generation", "oracle", "BertScore") == pytest.approx(100.0, abs=1e-3)
    assert metric("report_generation", "oracle", "GREEN") == 100.0
    assert metric("classification", "oracle", "Macro-F1") == 100.0
    for task in ("anatomical_grounding", "abnormality_grounding", "phrase_grounding"):
        assert metric(task, "oracle", "mAP@0.5") == 100.0 and metric(task, "oracle", "COCO AP50") == 100.0
    assert metric("conversation", "oracle", "Judge score") == 10.0
    assert metric("grounded_conversation", "oracle", "Judge score") == 10.0
    assert metric("report_generation", "oracle", "RadGraph F1") == 100.0

    # The tiny model was scored; the baseline without weights is reported, not scored.
    assert read_task_evaluation(storage_root, "classification", "all").status == "scored"
    missing = read_task_evaluation(storage_root, "phrase_grounding", "chexagent")
    assert missing.status == "not_available" and "no model folder" in missing.reason

    tables = (storage_root / "evaluation" / "results" / "tables.md").read_text()
    assert "| RadVLM | " in tables and "85.3" in tables and "not available [" in tables
    assert (storage_root / "evaluation" / "results" / "figure4_per_label_f1.png").is_file()
    assert (storage_root / "evaluation" / "results" / "figure5_phrase_grounding.png").is_file()
    metadata = result.asset_materializations_for_node("results_tables")[0].metadata
    assert "Table 4" in metadata["tables"].value


def test_evaluation_assets_load_in_definitions_and_explain_themselves():
    from dagster import AssetKey, Definitions

    from assets.evaluation import evaluation_assets
    from radvlm_pipeline.evaluation.baselines import model_adapters

    storage = PipelineStorage(data_root="data", storage_root="storage")
    defs = Definitions(
        assets=evaluation_assets,
        resources={
            "storage": storage,
            "llm": LLMResource(storage=storage),
            "answer_server": AnswerServer(storage=storage),
        },
    )
    defs.resolve_all_job_defs()
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.materializable_asset_keys}
    assert keys == {
        "eval_answers",
        "results_tables",
        "eval_report_generation",
        "eval_classification",
        "eval_anatomical_grounding",
        "eval_abnormality_grounding",
        "eval_phrase_grounding",
        "eval_conversation",
        "eval_grounded_conversation",
    }
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        assert node.group_name == "evaluation" and node.description and node.to_asset_spec().kinds
    answers = graph.get(AssetKey("eval_answers"))
    assert answers.partitions_def.get_partition_keys() == list(model_adapters())
    assert {k.to_user_string() for k in answers.parent_keys} == {
        "corpus_eval_sets",
        "base_model",
        "finetuned_model",
    }


def test_figure_5_draws_the_base_model_beside_the_fine_tuned_one(tmp_path):
    from PIL import Image

    from radvlm_pipeline.evaluation.generation import ANSWERS_SCHEMA, read_eval_set
    from radvlm_pipeline.evaluation.results_figures import grounding_examples
    from radvlm_pipeline.layout import StorageLayout

    data_root, storage_root = tmp_path / "data", tmp_path / "storage"
    write_eval_sets(data_root, storage_root)
    rows = read_eval_set(storage_root, "phrase_grounding").head(2)
    layout = StorageLayout(storage_root)
    for model, answer in (("llava_onevision", "no box here"), ("all", "It is at [0.10, 0.20, 0.50, 0.60].")):
        layout.answers(model, "phrase_grounding").parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame(
            {
                "id": rows["id"],
                "task": ["phrase_grounding"] * rows.height,
                "model": [model] * rows.height,
                "answers": [[answer]] * rows.height,
                "raw_answers": [[answer]] * rows.height,
            },
            schema=ANSWERS_SCHEMA,
        ).write_parquet(layout.answers(model, "phrase_grounding"))

    out = grounding_examples(
        storage_root, data_root, "phrase_grounding", ["llava_onevision", "all", "maira2"], tmp_path / "f.png"
    )
    with Image.open(out) as sheet:
        cell_width, cell_height = sheet.width // 3, sheet.height // rows.height
        assert sheet.width == 3 * cell_width  # truth, base, fine-tuned; MAIRA-2 has no answers
        base = sheet.crop((cell_width, 0, 2 * cell_width, cell_height))
        tuned = sheet.crop((2 * cell_width, 0, 3 * cell_width, cell_height))
        assert base.tobytes() != tuned.tobytes()  # only the fine-tuned answer has a box drawn
