"""`make demo`: materialize the whole asset graph on the bundled sample, offline, into the local
Dagster instance (DAGSTER_HOME), then print what was produced and how to look at it.

Assets run in dependency order; a partitioned stage runs once per partition, as a backfill would.
"""

from __future__ import annotations

import sys
import time

from dagster import AssetRecordsFilter, DagsterInstance, materialize

from assets.policies import RAW_DATASETS
from definitions import defs
from radvlm_pipeline import layout
from radvlm_pipeline.training.config import DEMO

# Step-by-step events stay in the instance (the UI shows them); the terminal gets warnings and errors.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

# Fine-tuning uses the demo profile (training/config.py): the tiny model starts from random weights,
# and the paper's settings (global batch 256) do not fit the sample. A CPU budget for the demo: the tiny model answers the first rows of each evaluation set with short
# answers (greedy decoding of multi-round conversations dominates the demo's time otherwise). Recorded
# in each materialization's run config; materialize from the UI without it for the full sets.
DEMO_OP_CONFIG = {
    "finetuned_model": {"profile": DEMO},
    "eval_answers": {"max_samples": 6, "max_new_tokens": 24},
}


def run_config_for(keys) -> dict:
    names = {key.to_user_string() for key in keys}
    ops = {name: {"config": config} for name, config in DEMO_OP_CONFIG.items() if name in names}
    return {**QUIET, "ops": ops} if ops else QUIET


def stages(asset_graph):
    """Consecutive runs of assets that share a partitioning, in topological order."""
    batches: list[tuple[object, list]] = []
    for level in asset_graph.toposorted_asset_keys_by_level:
        for key in sorted(level, key=lambda k: k.to_user_string()):
            node = asset_graph.get(key)
            if not node.is_materializable:
                continue
            partitions = node.partitions_def
            if batches and batches[-1][0] == partitions and not _depends_on(asset_graph, key, batches[-1][1]):
                batches[-1][1].append(key)
            else:
                batches.append((partitions, [key]))
    return batches


def _depends_on(asset_graph, key, keys) -> bool:
    return bool(asset_graph.get(key).parent_keys & set(keys))


def summary(instance: DagsterInstance, key) -> str:
    """Rows of the latest materialization, summed over partitions for a partitioned asset."""
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=10_000).records
    latest = {}
    for record in records:  # newest first
        materialization = record.asset_materialization
        latest.setdefault(materialization.partition, materialization)
    rows = [
        m.metadata["dagster/row_count"].value for m in latest.values() if "dagster/row_count" in m.metadata
    ]
    partitions = f"{len(latest)} partitions, " if None not in latest else ""
    return f"{partitions}rows: {sum(rows)}" if rows else partitions.rstrip(", ")


def main() -> int:
    instance = DagsterInstance.get()
    asset_graph = defs.resolve_asset_graph()
    every_asset = [*defs.assets, *defs.asset_checks]
    resources = defs.resources
    started = time.monotonic()
    failures = []
    # Record the dataset folders' fingerprints first, so the release sensor later sees only real changes.
    print("observing raw_datasets", flush=True)
    if not materialize(
        every_asset,
        selection=[RAW_DATASETS],
        instance=instance,
        resources=resources,
        raise_on_error=False,
        run_config=QUIET,
    ).success:
        failures.append("raw_datasets")
    for partitions, keys in stages(asset_graph):
        partition_keys = (
            partitions.get_partition_keys(dynamic_partitions_store=instance) if partitions else [None]
        )
        for partition_key in partition_keys:
            label = ", ".join(k.to_user_string() for k in keys) + (
                f" [{partition_key}]" if partition_key else ""
            )
            print(f"materializing {label}", flush=True)
            result = materialize(
                every_asset,
                selection=keys,
                partition_key=partition_key,
                instance=instance,
                resources=resources,
                raise_on_error=False,
                run_config=run_config_for(keys),
            )
            if not result.success:
                failures.append(label)
    elapsed = time.monotonic() - started
    print()
    print(
        f"Materialized {len(asset_graph.materializable_asset_keys)} assets in {elapsed:.0f} s "
        f"into the Dagster instance at {instance.root_directory}."
    )
    print(f"Data root: {layout.data_root()}   Outputs: {layout.storage_root()}")
    for key in sorted(asset_graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
        print(f"  {key.to_user_string():32s} {summary(instance, key)}")
    print(f"Demo budget: {DEMO_OP_CONFIG} (run config of those materializations).")
    print("Open the UI on this instance: `make ui`, then http://127.0.0.1:3000")
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
