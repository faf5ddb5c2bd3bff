"""``corpus_inputs``: the rows each corpus partition draws, as an observed asset with one partition per
Table 1 row, between the assets the corpus reads (sources, LLM stages, evaluation sets) and ``corpus``.

Why it exists: those upstream assets are unpartitioned, and Dagster marks every partition of a
downstream asset stale when an unpartitioned upstream gets a new data version, so after any change
every corpus partition would read as stale. Here each partition's data version is the digest of the
samples its builder draws now (``radvlm_pipeline.corpus.lineage``), and ``corpus`` depends on this asset
partition to partition: a corpus partition is stale exactly when the rows it draws changed, whatever
changed them (a release, a correction, a hand rebuild, a backfill).

Every asset that writes what the corpus reads records the draws right after writing
(``record_corpus_inputs``), so the stale flags are right without the automation sensor. Observing the
asset (its page, "Observe") records them from the files as they are, e.g. on an instance built before.
"""

import warnings

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetSpec,
    BetaWarning,
    OpExecutionContext,
    StaticPartitionsDefinition,
    multi_observable_source_asset,
)
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from radvlm_pipeline.corpus.lineage import draws
from radvlm_pipeline.corpus.table import partition_keys
from radvlm_pipeline.datasets import DATASETS
from radvlm_pipeline.layout import CLEAN_REPORTS, CONVERSATIONS
from resources.storage import PipelineStorage

CORPUS_INPUTS = AssetKey("corpus_inputs")
CORPUS_PARTITIONS = StaticPartitionsDefinition(partition_keys())
EVAL_SETS = AssetKey("corpus_eval_sets")
# What the corpus builders read: every source's tables, both LLM outputs, the evaluation sets' patients.
READ_BY_THE_CORPUS = [*(AssetKey(key) for key in DATASETS), AssetKey(CLEAN_REPORTS), AssetKey(CONVERSATIONS)]

warnings.filterwarnings("ignore", r"Function `multi_observable_source_asset`", BetaWarning)


def record_corpus_inputs(
    context: AssetExecutionContext | OpExecutionContext, storage: PipelineStorage
) -> None:
    """Record what every corpus partition draws now: called by each asset the corpus reads, after it
    wrote its files. A partition whose draw did not change gets the same data version again, which
    neither marks it stale nor triggers a rebuild."""
    for found in draws(storage.storage_path).values():
        metadata = {"samples": found.samples, "held_out_patients": found.held_out_patients}
        if found.missing:
            metadata["missing"] = found.missing
        context.log_event(
            AssetObservation(
                CORPUS_INPUTS,
                partition=found.partition,
                tags={DATA_VERSION_TAG: found.version},
                metadata=metadata,
            )
        )


@multi_observable_source_asset(
    specs=[
        AssetSpec(
            CORPUS_INPUTS,
            deps=[*READ_BY_THE_CORPUS, EVAL_SETS],
            partitions_def=CORPUS_PARTITIONS,
            group_name="corpus",
            kinds={"polars"},
            # Skippable: the observations are per partition, logged above; no unpartitioned one.
            skippable=True,
            description="The input rows each corpus partition (Table 1 row) draws: its builder's samples "
            "from the source tables and LLM outputs, and the patients the evaluation sets hold out. Its "
            "data version per partition is a digest of those rows, recorded by every asset that writes "
            "them; a corpus partition is stale exactly when its draw changed.",
        )
    ],
)
def corpus_inputs(context: OpExecutionContext, storage: PipelineStorage):
    record_corpus_inputs(context, storage)
    yield from ()
