"""Group "llm": prior-study removal and conversation synthesis (the logic is in ``radvlm_pipeline.llm``).

Both assets write Parquet under ``<storage_root>/llm/`` (output plus ``*_quarantine``) and report in
their metadata which backend answered, what it cost and a sample of inputs beside outputs. Their code
version folds in the prompt file's hash, so editing a prompt marks them changed in the UI.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import polars as pl
from dagster import AssetExecutionContext, AssetKey, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from assets.corpus_inputs import record_corpus_inputs
from assets.metadata import counts_markdown, preview
from assets.policies import LLM_POOL, LLM_STEP_RETRY, rebuild_when_upstream_changes
from assets.versions import code_version, files_data_version, project_modules
from radvlm_pipeline.layout import CLEAN_REPORTS, CONVERSATIONS
from radvlm_pipeline.llm import (
    LLMConfigurationError,
    calls,
    conversations,
    endpoint,
    outputs,
    prior_removal,
    runner,
)
from radvlm_pipeline.llm.attempts import DEFAULT_MAX_ATTEMPTS
from radvlm_pipeline.llm.outputs import StageOutput, write_stage_output
from radvlm_pipeline.sources.base import read_table
from resources.llm import LLMResource
from resources.storage import PipelineStorage

_LLM_MODULES = (calls, endpoint, outputs, runner)


def stage_code_version(stage: ModuleType) -> str:
    """The stage's prompt version plus its code, every project module it uses (its rules, validation and
    joins live in modules of their own) and the shared LLM code: any change marks the asset stale."""
    used = {module.__name__: module for module in (*project_modules(stage), *_LLM_MODULES)}
    return code_version(*(used[name] for name in sorted(used)), extra=stage.PROMPT.version)


SOURCE_TABLES = ("images", "reports", "labels", "boxes")


@contextmanager
def failing_at_once_on_configuration_errors() -> Iterator[None]:
    """A dataset not approved for the endpoint, a rejected key or an unknown model fails every retry the
    same way: raised as ``Failure(allow_retries=False)``, the step fails at once despite LLM_STEP_RETRY."""
    try:
        yield
    except LLMConfigurationError as exc:
        raise Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc


def _source_tables(storage: PipelineStorage, sources: tuple[str, ...], required: str):
    """The canonical tables of each source that has been materialized, and why the others are left out.

    A user may hold only some datasets: the stage then runs on those it has and says which it skipped;
    only ``required`` (MIMIC-CXR) must be there.
    """
    tables, skipped = {}, {}
    for source in sources:
        missing = [name for name in SOURCE_TABLES if not storage.layout.source_table(source, name).is_file()]
        if missing:
            reason = f"no {', '.join(missing)} tables under {storage.layout.source_dir(source)}: materialize '{source}' first"
            if source == required:
                raise FileNotFoundError(reason)
            skipped[source] = reason
        else:
            tables[source] = {name: read_table(storage.layout, source, name) for name in SOURCE_TABLES}
    return tables, skipped


def _metadata(
    output: StageOutput, llm: LLMResource, written: dict[str, Path], by: list[str], skipped: dict[str, str]
) -> dict:
    return {
        "dagster/row_count": output.table.height,
        "backend": llm.backend_label,
        "sources_skipped": skipped,
        "quarantined": output.quarantine.height,
        **output.facts,
        **llm.usage_metadata(output.stats),
        "rows_by": counts_markdown(output.table, by),
        "quarantine_by_reason": counts_markdown(output.quarantine, ["reason"]),
        "sample_inputs_and_outputs": MetadataValue.md(output.sample_markdown),
        "quarantine_preview": preview(output.quarantine.drop("cache_key")),
        **{f"path_{name}": MetadataValue.path(str(path)) for name, path in written.items()},
    }


class AttemptsConfig(Config):
    max_attempts: int = Field(
        default=DEFAULT_MAX_ATTEMPTS,
        description="Answers per input (with seed 0, 1, ...) before one that fails the stage's check "
        "(cut off, adds words to the report, invalid conversation) is quarantined.",
    )


@asset(
    name=CLEAN_REPORTS,
    group_name="llm",
    kinds={"openai", "parquet"},
    deps=[AssetKey(source) for source in prior_removal.SOURCES],
    code_version=stage_code_version(prior_removal),
    automation_condition=rebuild_when_upstream_changes(),
    pool=LLM_POOL,
    retry_policy=LLM_STEP_RETRY,
    description="MIMIC-CXR and CheXpert-Plus reports rewritten by the LLM to describe only the current image "
    "(no comparisons with prior studies, no history); 'nothing_left' reports leave report generation. "
    "An answer cut off mid-sentence or with words the report lacks is asked again, then quarantined. "
    "A source not materialized (other than MIMIC-CXR) is skipped and named in the metadata.",
)
def reports_without_priors(
    context: AssetExecutionContext, config: AttemptsConfig, storage: PipelineStorage, llm: LLMResource
) -> MaterializeResult:
    tables, skipped = _source_tables(storage, prior_removal.SOURCES, required=conversations.STANDARD_SOURCE)
    reports = pl.concat([source["reports"] for source in tables.values()])
    with failing_at_once_on_configuration_errors():
        context.log.info(f"cleaning {reports.height} reports with backend {llm.backend_label}")
        output = prior_removal.remove_priors(reports, llm.run, llm.backend_label, config.max_attempts)
    written = write_stage_output(output, storage.layout, CLEAN_REPORTS)
    record_corpus_inputs(context, storage)
    return MaterializeResult(
        metadata=_metadata(output, llm, written, ["source", "status"], skipped),
        data_version=files_data_version(written.values()),
    )


class ConversationConfig(AttemptsConfig):
    standard_caps: dict[str, int] = Field(
        default_factory=lambda: dict(conversations.PAPER_STANDARD_CAPS),
        description="Most standard (MIMIC-CXR) conversations asked for per split, chosen by a hash of the "
        "image before any request; a split not named is not capped. The paper's (Table 1): 80,312 train, "
        "523 test.",
    )
    cap_seed: int = Field(default=0, description="Another seed draws another subset under the caps.")


@asset(
    name=CONVERSATIONS,
    group_name="llm",
    kinds={"openai", "parquet"},
    deps=[
        AssetKey(CLEAN_REPORTS),
        AssetKey(conversations.STANDARD_SOURCE),
        *(AssetKey(source) for source in conversations.GROUNDED_SOURCES),
    ],
    code_version=stage_code_version(conversations),
    automation_condition=rebuild_when_upstream_changes(),
    pool=LLM_POOL,
    retry_policy=LLM_STEP_RETRY,
    description="Multi-turn user/assistant conversations written by the LLM from each image's facts: standard "
    "(MIMIC-CXR, capped per split before any request: the paper's 80,312 train and 523 test) and grounded "
    "with phrase boxes (MS-CXR, PadChest-GR, when materialized), every split; the test split by the LLM "
    "resource's test_model when set (the paper: gpt-4o); invalid ones quarantined.",
)
def conversations_asset(
    context: AssetExecutionContext, config: ConversationConfig, storage: PipelineStorage, llm: LLMResource
) -> MaterializeResult:
    tables, skipped = _source_tables(
        storage,
        (conversations.STANDARD_SOURCE, *conversations.GROUNDED_SOURCES),
        required=conversations.STANDARD_SOURCE,
    )
    clean_reports = pl.read_parquet(storage.layout.llm_output(CLEAN_REPORTS))
    with failing_at_once_on_configuration_errors():
        plan = conversations.ConversationPlan(
            config.max_attempts, config.standard_caps, config.cap_seed, llm.settings().test_model
        )
        output = conversations.build_conversations(tables, clean_reports, llm.run, llm.backend_label, plan)
    context.log.info(f"{output.table.height} conversations, {output.quarantine.height} quarantined")
    written = write_stage_output(output, storage.layout, CONVERSATIONS)
    record_corpus_inputs(context, storage)
    return MaterializeResult(
        metadata=_metadata(output, llm, written, ["source", "kind", "split"], skipped),
        data_version=files_data_version(written.values()),
    )


llm_assets = [reports_without_priors, conversations_asset]
