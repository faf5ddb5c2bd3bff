"""What the assets declare about how they are operated: when they re-run by themselves, which concurrency
pool they queue in, and how they retry. Kept apart from the asset modules so the whole policy reads in one
place; ``dagster.yaml`` sets the pools' limits. Here rather than in ``sensors``, which imports the assets:
imports run one way.

Re-runs after a release or a correction in a dataset folder (``sensors.dataset_releases`` observes them):

1. the change gives the dataset's partition of ``raw_datasets`` a new data version;
2. that dataset's source asset, the source assets built on it (Chest ImaGenome and MS-CXR read MIMIC-CXR's
   images), the LLM stages and the evaluation sets re-run in one run (``rebuild_when_upstream_changes``);
   each records what every corpus partition now draws (``corpus_inputs``);
3. once nothing the corpus reads is running or due to, exactly the corpus partitions whose draw changed re-run
   (``rebuild_when_drawn_rows_change``), then the catalog and the LLaVA export, if the corpus or the
   evaluation sets changed content (``rebuild_catalog_after_the_corpus``).

The same holds whatever changed the rows (a hand rebuild, a backfill): step 3 follows the data versions,
not the release. Training and evaluation carry no condition: the models whose corpus rows changed read as
stale in the UI and GPU time is spent only when someone asks (``results_tables`` re-renders by itself
once evaluations change).
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
    StaticPartitionsDefinition,
)

from radvlm_pipeline.datasets import DATASETS

# --- The observed dataset folders -----------------------------------------------------------------------
RAW_DATASETS = AssetKey("raw_datasets")
DATASET_PARTITIONS = StaticPartitionsDefinition(list(DATASETS))


def raw_dataset_dep(dataset: str) -> AssetDep:
    """A source asset reads one dataset folder: its partition of ``raw_datasets``."""
    return AssetDep(RAW_DATASETS, partition_mapping=SpecificPartitionsPartitionMapping([dataset]))


# --- Automation conditions -------------------------------------------------------------------------------
def rebuild_when_upstream_changes() -> AutomationCondition:
    """``eager()`` with two changes. An upstream asset counts as updated when its data version changed,
    not whenever it was materialized: a source rebuilt into the same tables sets nothing off (upstream
    assets requested on the same tick still pull the asset into their run). And an upstream asset never
    materialized does not hold the asset back: a user may hold only some datasets, and the stages skip
    what is missing or fail saying what to materialize."""
    content_changed = AutomationCondition.any_deps_match(
        (AutomationCondition.data_version_changed() & ~AutomationCondition.executed_with_root_target())
        | AutomationCondition.will_be_requested()
    ).with_label("upstream content changed")
    return (
        AutomationCondition.eager()
        .without(~AutomationCondition.any_deps_missing())
        .replace("any_deps_updated", content_changed)
        .with_label("rebuild when upstream changes")
    )


def _drawn_rows_changed(drawn: AssetKey) -> AutomationCondition:
    """The partition's draw (its partition of ``drawn``, observed with a digest) has a new data version."""
    return (
        AutomationCondition.any_deps_match(AutomationCondition.newly_updated())
        .allow(AssetSelection.assets(drawn))
        .with_label("the rows it draws changed")
    )


def rebuild_when_drawn_rows_change(drawn: AssetKey) -> AutomationCondition:
    """True for a corpus partition once the rows it draws changed, and no asset it draws from is running
    or about to (its own ``rebuild_when_upstream_changes`` holds).

    Waiting matters: a partition is built from files its upstream assets write, which a running step
    would still be rewriting, and a rebuild they are due for may change the draw again (after a source
    rebuilt by hand, the sources built on it and the evaluation sets follow). Those assets carry no
    partitions, so they never run in the corpus partition's run and ``will_be_requested`` cannot see them;
    their own condition, evaluated here too, can.
    """
    upstream_busy = (
        AutomationCondition.any_deps_match(
            AutomationCondition.any_deps_match(
                rebuild_when_upstream_changes() | AutomationCondition.in_progress()
            )
        )
        .allow(AssetSelection.assets(drawn))
        .with_label("an asset it draws from is running or due to")
    )
    return (
        _drawn_rows_changed(drawn).since_last_handled() & ~upstream_busy & ~AutomationCondition.in_progress()
    ).with_label("rebuild when the rows it draws change")


def rebuild_catalog_after_the_corpus(drawn: AssetKey) -> AutomationCondition:
    """True once a corpus partition or the evaluation sets changed content (data version), and no corpus
    partition is left to rebuild or running: the catalog describes the corpus once it has settled.

    Data versions rather than materializations: a partition re-run that wrote the same rows leaves the
    catalog (and the LLaVA export after it) as it is.
    """
    content_changed = AutomationCondition.any_deps_match(
        AutomationCondition.data_version_changed()
    ).with_label("the corpus or the evaluation sets changed content")
    partition_pending = AutomationCondition.any_deps_match(
        _drawn_rows_changed(drawn).since_last_handled()
    ).with_label("a corpus partition is left to rebuild")
    return (
        content_changed.since_last_handled()
        & ~partition_pending
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("rebuild after the corpus changed")


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
