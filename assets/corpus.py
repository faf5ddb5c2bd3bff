"""Group "corpus": the instruction corpus of paper Table 1, its evaluation sets, catalog and LLaVA export.

- ``corpus_eval_sets``: held-out sets from the test splits (``<storage_root>/corpus/eval/<task>.parquet``).
- ``corpus``: partitioned by Table 1 row (``<task>__<source>``); each partition rebuilds only its own shards
  under ``corpus/shards/<task>__<source>/``, leaving out the patients the evaluation sets hold. It depends
  on ``corpus_inputs`` partition to partition (``assets/corpus_inputs.py``), so a partition reads as stale,
  and re-runs by itself, exactly when the rows it draws changed.
- ``corpus_catalog``: ``corpus/manifest.json`` (counts, hashes) and ``corpus/corpus.duckdb`` (SQL views);
  Table 1 recomputed from the files; the corpus checks run here, on the corpus as a whole.
- ``corpus_llava_export``: ``corpus/llava/*.json`` + ``train.yaml`` for LLaVA-NeXT training.

Each asset's data version is a hash of the files it wrote, so what depends on it (the catalog, the
fine-tuned models, the evaluations) reads as stale only when its content changed.
"""

from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from assets.corpus_inputs import (
    CORPUS_INPUTS,
    CORPUS_PARTITIONS,
    READ_BY_THE_CORPUS,
    corpus_inputs,
    record_corpus_inputs,
)
from assets.metadata import column_schema, preview
from assets.policies import (
    rebuild_catalog_after_the_corpus,
    rebuild_when_drawn_rows_change,
    rebuild_when_upstream_changes,
)
from assets.versions import code_version, files_data_version
from radvlm_pipeline import corpus as corpus_package
from radvlm_pipeline.corpus import checks
from radvlm_pipeline.corpus.build import build_eval_sets, build_partition
from radvlm_pipeline.corpus.catalog import write_catalog
from radvlm_pipeline.corpus.llava import export_llava, image_roots
from radvlm_pipeline.corpus.report import sample_instructions, table1_markdown
from radvlm_pipeline.corpus.shards import (
    eval_paths,
    partition_manifests,
    shard_paths,
    write_corpus_manifest,
)
from radvlm_pipeline.corpus.table import CorpusConfig
from radvlm_pipeline.markdown import markdown_table
from radvlm_pipeline.schema import CORPUS_SCHEMA
from resources.storage import PipelineStorage

# Any file of the corpus package (templates included): editing one marks the corpus assets stale in the UI.
CODE_VERSION = code_version(*sorted(Path(corpus_package.__file__).parent.glob("*.py")))


class CorpusBuildConfig(Config):
    """The draw and the Table 1 settings. Use the same values for every partition and the evaluation sets:
    each partition's manifest records the fingerprint, and the catalog shows if they differ."""

    seed: int = Field(0, description="Seed of every template, region and subsample choice.")
    rows_per_shard: int = Field(100_000, description="Most rows per Parquet shard.")
    repeat: dict[str, int] = Field(
        default_factory=dict,
        description="Repetition factor per Table 1 row, e.g. {'phrase_grounding__ms_cxr': 3}.",
    )
    cap: dict[str, int] = Field(
        default_factory=dict,
        description="Most samples per Table 1 row, e.g. {'anatomical_grounding__chest_imagenome': 80000}.",
    )
    splits: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Splits a Table 1 row trains on (train and/or validate; never test), e.g. "
        "{'phrase_grounding__ms_cxr': ['train']}. Default: train, but train + validate for phrase grounding "
        "(MS-CXR, PadChest-GR) and PadChest-GR grounded conversations, as the paper's code.",
    )

    def corpus_config(self) -> CorpusConfig:
        return CorpusConfig(seed=self.seed, rows_per_shard=self.rows_per_shard).with_overrides(
            self.repeat, self.cap, self.splits
        )


class LlavaExportConfig(Config):
    image_roots: dict[str, str] = Field(
        default_factory=dict,
        description="Image root per image dataset on the training machine (e.g. {'mimic_cxr': '/scratch/mimic-cxr'}); "
        "default: the pipeline's data root and storage root.",
    )


def _skipped_markdown(stats: dict[str, int]) -> MetadataValue:
    return MetadataValue.md(markdown_table(["step", "rows"], [(k, f"{v:,}") for k, v in stats.items()]))


@asset(
    group_name="corpus",
    kinds={"polars", "parquet"},
    deps=READ_BY_THE_CORPUS,
    code_version=CODE_VERSION,
    automation_condition=rebuild_when_upstream_changes(),
    description="Held-out evaluation sets from the test splits (paper Table 1, right column): one Parquet file "
    "per task under corpus/eval/. Built before the training partitions, which leave out their patients.",
)
def corpus_eval_sets(
    context: AssetExecutionContext, config: CorpusBuildConfig, storage: PipelineStorage
) -> MaterializeResult:
    results = build_eval_sets(storage.storage_path, config.corpus_config())
    record_corpus_inputs(context, storage)  # the patients they hold are left out of the partitions
    rows = pl.concat([r.rows for r in results.values()])
    context.log.info(", ".join(f"{task}: {r.rows.height}" for task, r in results.items()))
    return MaterializeResult(
        metadata={
            "dagster/row_count": rows.height,
            "dagster/column_schema": column_schema(CORPUS_SCHEMA),
            "rows_per_set": MetadataValue.md(
                markdown_table(
                    ["task", "source", "rows", "steps"],
                    [
                        (task, r.manifest["source"], f"{r.rows.height:,}", r.manifest["stats"])
                        for task, r in results.items()
                    ],
                )
                + "\n"
            ),
            "sample_instructions": MetadataValue.md(sample_instructions(rows)),
            "folder": MetadataValue.path(str(storage.layout.corpus.eval_sets)),
        },
        data_version=files_data_version(eval_paths(storage.layout.corpus)),
    )


@asset(
    group_name="corpus",
    kinds={"polars", "parquet"},
    partitions_def=CORPUS_PARTITIONS,
    deps=[CORPUS_INPUTS],
    code_version=CODE_VERSION,
    automation_condition=rebuild_when_drawn_rows_change(CORPUS_INPUTS),
    description="The instruction corpus, one partition per paper Table 1 row (task x source): template-built "
    "single-turn instructions or LLM conversations, repeated or capped as Table 1 says, as zstd Parquet shards "
    "under corpus/shards/<task>__<source>/. Backfilling a partition rebuilds only that row. Stale exactly "
    "when the rows it draws (corpus_inputs) changed.",
)
def corpus(
    context: AssetExecutionContext, config: CorpusBuildConfig, storage: PipelineStorage
) -> MaterializeResult:
    result = build_partition(storage.storage_path, context.partition_key, config.corpus_config())
    manifest = result.manifest
    context.log.info(f"{context.partition_key}: {manifest['rows']} rows in {len(manifest['files'])} shard(s)")
    return MaterializeResult(
        metadata={
            "dagster/row_count": manifest["rows"],
            "dagster/column_schema": column_schema(CORPUS_SCHEMA),
            "samples": manifest["samples"],
            "repeat": manifest["repeat"],
            "cap": manifest["cap"] if manifest["cap"] is not None else "none",
            "splits": MetadataValue.json(
                {"trained_on": manifest["splits"], "rows": manifest["rows_by_split"]}
            ),
            "rows_by_step": _skipped_markdown(manifest["stats"]),
            "shards": MetadataValue.json(manifest["files"]),
            "config_fingerprint": manifest["config_fingerprint"],
            "sample_instructions": MetadataValue.md(sample_instructions(result.rows, per_task=3)),
            "preview": preview(result.rows.select("id", "split", "image_path", "template_id", "turns")),
            "folder": MetadataValue.path(str(storage.layout.corpus.partition(context.partition_key))),
        },
        data_version=files_data_version(
            storage.layout.corpus.partition(context.partition_key) / f["file"] for f in manifest["files"]
        ),
    )


@asset(
    group_name="corpus",
    kinds={"duckdb", "parquet"},
    deps=[AssetKey("corpus"), AssetKey("corpus_eval_sets")],
    code_version=CODE_VERSION,
    automation_condition=rebuild_catalog_after_the_corpus(CORPUS_INPUTS),
    description="The whole corpus as one thing to inspect: corpus/manifest.json (rows and sha256 of every "
    "shard and evaluation file) and corpus/corpus.duckdb (views: corpus, evaluation, eval_<task>, table1, "
    "manifest). Table 1 is recomputed here from the files; the corpus checks run on this asset.",
)
def corpus_catalog(context: AssetExecutionContext, storage: PipelineStorage) -> MaterializeResult:
    root = storage.layout.corpus
    manifest = write_corpus_manifest(root)
    catalog = write_catalog(root)
    fingerprints = sorted(
        {p["config_fingerprint"] for p in manifest["partitions"].values()}
        | {e["config_fingerprint"] for e in manifest["eval_sets"].values()}
    )
    if len(fingerprints) > 1:
        context.log.warning(f"partitions were built with different configs: {fingerprints}")
    first_rows = (
        pl.concat(
            [
                pl.read_parquet(root.partition(key) / p["files"][0]["file"], n_rows=1)
                for key, p in partition_manifests(root).items()
            ]
        )
        if manifest["partitions"]
        else pl.DataFrame(schema=CORPUS_SCHEMA)
    )
    return MaterializeResult(
        metadata={
            "dagster/row_count": manifest["training_rows"],
            "evaluation_rows": manifest["evaluation_rows"],
            "partitions_built": len(manifest["partitions"]),
            "table_1": MetadataValue.md(table1_markdown(manifest)),
            "sample_instructions": MetadataValue.md(sample_instructions(first_rows)),
            "config_fingerprints": ", ".join(fingerprints),
            "catalog": MetadataValue.path(str(catalog)),
            "manifest": MetadataValue.path(str(root.manifest)),
        },
        data_version=files_data_version([root.manifest]),  # every shard's and evaluation file's hash
    )


def _check_result(outcome: checks.CheckOutcome, what: str) -> AssetCheckResult:
    examples = (
        "\n".join(f"- {e}" for e in outcome.examples) or f"{outcome.checked:,} {what} checked, no problem"
    )
    return AssetCheckResult(
        passed=outcome.passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "checked": outcome.checked,
            "problems": outcome.problems,
            "examples": MetadataValue.md(examples),
        },
    )


@asset_check(
    asset=corpus_catalog,
    blocking=True,
    description="No training row comes from a test split, and no patient of an evaluation set is in a "
    "training row (MIMIC-CXR, Chest ImaGenome and MS-CXR share patients; so do CheXpert and CheXpert-Plus).",
)
def no_test_patient_in_training(storage: PipelineStorage) -> AssetCheckResult:
    return _check_result(checks.no_held_out_patient_in_training(storage.layout.corpus), "training rows")


@asset_check(
    asset=corpus_catalog,
    blocking=True,
    description="Every image a training or evaluation row points to exists under its root.",
)
def every_image_exists(storage: PipelineStorage) -> AssetCheckResult:
    outcome = checks.images_exist(storage.layout.corpus, storage.data_path, storage.storage_path)
    return _check_result(outcome, "images")


@asset_check(
    asset=corpus_catalog,
    blocking=True,
    description="Every target box is normalised to [0, 1] with x1 < x2 and y1 < y2.",
)
def every_box_in_range(storage: PipelineStorage) -> AssetCheckResult:
    return _check_result(checks.boxes_in_range(storage.layout.corpus), "boxes")


@asset_check(
    asset=corpus_catalog,
    blocking=True,
    description="The evaluation's box parser reads back, from every answer, the boxes the row was built from.",
)
def every_answer_parses_back(storage: PipelineStorage) -> AssetCheckResult:
    return _check_result(checks.answers_parse_back(storage.layout.corpus), "answers with boxes")


@asset(
    group_name="corpus",
    kinds={"json"},
    deps=[corpus_catalog],
    code_version=CODE_VERSION,
    automation_condition=rebuild_when_upstream_changes(),
    description="The training partitions as LLaVA-NeXT JSON (corpus/llava/<task>__<source>.json, image paths "
    "absolute under the configured roots) and the mixture file corpus/llava/train.yaml for --data_path.",
)
def corpus_llava_export(config: LlavaExportConfig, storage: PipelineStorage) -> MaterializeResult:
    root = storage.layout.corpus
    paths = shard_paths(root)
    if not paths:
        raise FileNotFoundError(
            f"no corpus partition under {root.shards}: materialize corpus partitions first."
        )
    used = pl.scan_parquet(paths).select("image_dataset").unique().collect()["image_dataset"].to_list()
    roots = image_roots(sorted(used), storage.data_path, storage.storage_path, config.image_roots)
    written = export_llava(root, roots)
    return MaterializeResult(
        metadata={
            "dagster/row_count": sum(written.values()),
            "files": MetadataValue.json(written),
            "image_roots": MetadataValue.json({k: str(v) for k, v in roots.items()}),
            "mixture": MetadataValue.path(str(root.llava_mixture)),
        },
        data_version=files_data_version([root.llava_mixture, *(root.llava / name for name in written)]),
    )


corpus_assets = [corpus_inputs, corpus_eval_sets, corpus, corpus_catalog, corpus_llava_export]
corpus_checks = [
    no_test_patient_in_training,
    every_image_exists,
    every_box_in_range,
    every_answer_parses_back,
]
