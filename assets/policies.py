"""What the assets declare about how they are operated: when they re-run by themselves, which concurrency
pool they queue in, and how they retry. Kept apart from the asset modules so the whole policy reads in one
place; ``dagster.yaml`` sets the pools' limits. Here rather than in ``sensors``, which imports the assets:
imports run one way.

Re-runs after a new dataset release (``sensors.dataset_releases`` observes the folders):

1. the release gives the dataset's partition of ``raw_datasets`` a new data version;
2. that dataset's source asset, the source assets built on it (Chest ImaGenome and MS-CXR read MIMIC-CXR's
   images), the LLM stages and the evaluation sets re-run in one run (``rebuild_when_upstream_changes``);
3. once the evaluation sets are rebuilt, only the corpus partitions drawn from the released dataset's
   patients re-run (``rebuild_corpus_partition_after_release``), then the catalog and the LLaVA export.

Training and evaluation carry no condition: a release leaves them stale in the UI and GPU time is spent
only when someone asks (``results_tables`` re-renders by itself once evaluations change).
"""

from __future__ import annotations

from dagster import (
    AssetDep,
    AssetKey,
    AssetSelection,
    AutomationCondition,
    Backoff,
    Jitter,
    RetryPolicy,
    SpecificPartitionsPartitionMapping,
    StaticPartitionMapping,
    StaticPartitionsDefinition,
)

from radvlm_pipeline.datasets import DATASETS
from radvlm_pipeline.releases import corpus_partitions_changed_by

# --- The observed dataset folders -----------------------------------------------------------------------
RAW_DATASETS = AssetKey("raw_datasets")
DATASET_PARTITIONS = StaticPartitionsDefinition(list(DATASETS))


def raw_dataset_dep(dataset: str) -> AssetDep:
    """A source asset reads one dataset folder: its partition of ``raw_datasets``."""
    return AssetDep(RAW_DATASETS, partition_mapping=SpecificPartitionsPartitionMapping([dataset]))


def raw_datasets_dep_of_corpus() -> AssetDep:
    """Each corpus partition depends on the dataset folders whose release can change its rows."""
    mapping = {dataset: set(corpus_partitions_changed_by(dataset)) for dataset in DATASETS}
    return AssetDep(RAW_DATASETS, partition_mapping=StaticPartitionMapping(mapping))


# --- Automation conditions -------------------------------------------------------------------------------
def rebuild_when_upstream_changes(only: AssetKey | None = None) -> AutomationCondition:
    """``eager()``, except that an upstream asset never materialized does not hold the asset back: a user
    may hold only some datasets, and the stages skip what is missing or fail saying what to materialize.
    ``only``: react to updates of that upstream asset alone."""
    condition = AutomationCondition.eager().without(~AutomationCondition.any_deps_missing())
    if only is not None:
        condition = condition.replace(
            "any_deps_updated", AutomationCondition.any_deps_updated().allow(AssetSelection.assets(only))
        )
    return condition.with_label(
        "rebuild when upstream changes" + (f" ({only.to_user_string()})" if only else "")
    )


def rebuild_corpus_partition_after_release(last_upstream: AssetKey) -> AutomationCondition:
    """True for a partition once a release of one of its datasets has been observed and, after that,
    ``last_upstream`` (the evaluation sets, rebuilt last from the new source tables) has been rebuilt.

    Waiting for ``last_upstream`` matters: the partition is built from files its upstream assets write,
    which a run requested on the same tick would still be rewriting.
    """
    release = (
        AutomationCondition.any_deps_match(AutomationCondition.newly_updated())
        .allow(AssetSelection.assets(RAW_DATASETS))
        .with_label("new release of its datasets")
    )
    upstream_rebuilt = (
        AutomationCondition.any_deps_match(AutomationCondition.newly_updated())
        .allow(AssetSelection.assets(last_upstream))
        .with_label(f"{last_upstream.to_user_string()} rebuilt")
    )
    return (
        release.since_last_handled()
        & upstream_rebuilt.since(release)
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("rebuild after a release of its datasets")


# --- Concurrency pools (limits in dagster.yaml) -------------------------------------------------------------
LLM_POOL = "llm"  # steps that send prompts to the LLM endpoint (its rate limits are shared)
TRAINING_POOL = "training"  # fine-tuning jobs (local GPUs or the Slurm allocation)
GPU_INFERENCE_POOL = "gpu_inference"  # answer generation on a GPU

# --- Retries -----------------------------------------------------------------------------------------------
# A request that fails is retried inside the step (resources/llm.py: max_retries, backoff, Retry-After),
# so an LLM step fails for a transient reason when Batch API jobs are still running after batch_max_wait_s:
# the retried step picks the same batches up and waits again. The delay is short as the wait is in the step.
# A configuration error (dataset not approved for the endpoint, key or model rejected, unknown backend)
# would fail every retry the same way: the LLM steps raise it as Failure(allow_retries=False), which
# Dagster fails at once whatever the policy (assets/llm_stages.py).
LLM_STEP_RETRY = RetryPolicy(max_retries=2, delay=1, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
# A Slurm submission refused while the controller is busy, or a job the cluster ended (node failure,
# preemption, time limit): the retried step submits again and training resumes from its latest complete
# checkpoint. A job whose training crashed fails without retry (Failure(allow_retries=False) in
# resources/launchers.py): it would crash again.
TRAINING_RETRY = RetryPolicy(max_retries=2, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
