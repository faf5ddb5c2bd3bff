"""`make demo`: materialize the whole asset graph on the bundled sample, offline, into the local
Dagster instance (DAGSTER_HOME), then print what was produced and how to look at it.

Assets run in dependency order, stage by stage; a partitioned stage runs once per partition, as a
backfill would, its partitions side by side on the machine's cores. At the end one table says what each
stage took and what each model scored.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, materialize

from assets.policies import GPU_INFERENCE_POOL, LLM_POOL, RAW_DATASETS, TRAINING_POOL
from definitions import defs
from radvlm_pipeline import layout
from radvlm_pipeline.evaluation.baselines import BASE_MODEL, model_adapters
from radvlm_pipeline.evaluation.generation import EVALUATED_TASKS
from radvlm_pipeline.evaluation.results_tables import HEADLINE_METRICS, headline
from radvlm_pipeline.layout import RunLayout
from radvlm_pipeline.markdown import markdown_table
from radvlm_pipeline.training.config import DEMO
from radvlm_pipeline.training.recipes import RECIPES
from radvlm_pipeline.training.report import read_metrics
from resources import training_launcher_from_environment
from resources.launchers import IN_PROCESS

FINETUNED, EVAL_ANSWERS = AssetKey("finetuned_model"), AssetKey("eval_answers")
EVALUATIONS = {AssetKey(f"eval_{task}") for task in EVALUATED_TASKS}

# Step-by-step events and warnings stay in the instance (the UI shows them); the terminal gets errors.
# The warnings are the baselines without weights and the metrics without a judge, five models times
# eight assets: the closing table says the same in one cell each.
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

# Fine-tuning uses the demo profile (training/config.py): the tiny model starts from random weights, and
# the paper's settings (global batch 256) do not fit the sample. Answers cover every row of the sample's
# evaluation sets (a few rows would say nothing about grounding), 32 rows to a generate() call, and up
# to 48 new tokens: a box (a second one is cut), a label list or the first sentences of a report; the
# untrained model never stops before the limit. Recorded in each materialization's run config.
DEMO_OP_CONFIG = {
    "finetuned_model": {"profile": DEMO},
    "eval_answers": {"batch_size": 32, "max_new_tokens": 48},
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


def rows_of(instance: DagsterInstance, key) -> int | None:
    """Rows of the latest materialization, summed over partitions for a partitioned asset."""
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=10_000).records
    latest = {}
    for record in records:  # newest first
        materialization = record.asset_materialization
        latest.setdefault(materialization.partition, materialization)
    rows = [
        m.metadata["dagster/row_count"].value for m in latest.values() if "dagster/row_count" in m.metadata
    ]
    return sum(rows) if rows else None


@dataclass
class Stage:
    """One batch of assets the demo materialized (every partition of it), and how long that took."""

    keys: list
    partitions: int
    seconds: float = 0.0
    failed_partitions: set = field(default_factory=set)  # None for an unpartitioned stage

    @property
    def failed(self) -> bool:
        return bool(self.failed_partitions)

    @property
    def label(self) -> str:
        names = [key.to_user_string() for key in self.keys]
        if len(names) > 3:
            shared = os.path.commonprefix(names)
            names = (
                [f"{shared}* ({len(names)} assets)"] if shared else [f"{names[0]} + {len(names) - 1} more"]
            )
        partitions = f" x {self.partitions} partitions" if self.partitions > 1 else ""
        return ", ".join(names) + partitions + (" FAILED" if self.failed else "")


# The closing table's model columns: the untrained base model, RadVLM (recipe "all"), the recipe trained on
# the row's task alone (Table 6) and the oracle that answers with the ground truth.
ONLY = "single-task recipe"
COLUMNS = {BASE_MODEL: "base model (untrained)", "all": "RadVLM (fine-tuned)", ONLY: ONLY, "oracle": "oracle"}


def single_task_recipe(task: str) -> str:
    return next(recipe for recipe, tasks in RECIPES.items() if recipe != "all" and task in tasks)


def loss_change(recipe: str) -> str:
    metrics = read_metrics(RunLayout(layout.StorageLayout(layout.storage_root()).model_dir(recipe)).metrics)
    return f"loss {metrics[0]['loss']:.2f} -> {metrics[-1]['loss']:.2f}" if metrics else ""


def headline_cell(task: str, model: str, failed: set) -> str:
    """A model's number, or why there is none; never an earlier demo's number for a run that failed now."""
    if model in failed:
        return "failed"
    try:
        return headline(layout.storage_root(), task, model)[1]
    except (OSError, ValueError) as exc:  # a metrics file cut short by a killed lane
        return f"unreadable ({type(exc).__name__})"


def closing_table(instance: DagsterInstance, stages: list[Stage]) -> str:
    """Stage, wall seconds, rows, and under the evaluation each task's headline metric per model: what the
    newcomer reads to see that fine-tuning learned."""
    failed = set().union(*(s.failed_partitions for s in stages if {FINETUNED, EVAL_ANSWERS} & set(s.keys)))
    body = []
    for stage in stages:
        counts = [rows_of(instance, key) for key in stage.keys]
        rows = sum(count for count in counts if count is not None) if any(counts) else ""
        cells = {model: "" for model in COLUMNS}
        if FINETUNED in stage.keys:
            cells["all"] = "failed" if "all" in stage.failed_partitions else loss_change("all")
        body.append([stage.label, f"{stage.seconds:.1f}", rows, *cells.values()])
        if set(stage.keys) == EVALUATIONS:
            failed_now = failed | stage.failed_partitions
            for task in EVALUATED_TASKS:
                models = [single_task_recipe(task) if model == ONLY else model for model in COLUMNS]
                body.append(
                    [f"  {task}: {HEADLINE_METRICS[task]}", "", ""]
                    + [headline_cell(task, model, failed_now) for model in models]
                )
    return markdown_table(["stage", "wall s", "rows", *COLUMNS.values()], body)


# Partitions of a stage run side by side, one process per core, each torch in it on one thread: on two
# cores the seven trainings and thirteen answer sets take half the wall time they take in a row. The
# pools the assets declare (one slot each in dagster.yaml, for GPUs) get as many slots as there are lanes
# while the demo runs, which runs from `make ui` at the same time share; the limits are put back after.
LANES = max(1, len(os.sched_getaffinity(0)))
POOLS = (GPU_INFERENCE_POOL, LLM_POOL, TRAINING_POOL)


def work_first(partition_key: str) -> int:
    """Longest first, so the lanes end a stage together. The stand-in for a partition's work is the
    number of tasks its model answers (RadVLM and the base model: all seven); the oracle and the
    baselines without weights also rank by it, though they take a second."""
    adapter = model_adapters().get(partition_key)
    return -len(adapter.tasks) if adapter else 0


def _materialize(names: list[str], partition_key: str | None) -> bool:
    """One partition of one stage, in a lane process: its own instance handle and resources."""
    keys = [AssetKey.from_user_string(name) for name in names]
    with DagsterInstance.get() as instance:
        return materialize(
            [*defs.assets, *defs.asset_checks],
            selection=keys,
            partition_key=partition_key,
            instance=instance,
            resources=demo_resources(),
            raise_on_error=False,
            run_config=run_config_for(keys),
        ).success


def demo_resources() -> dict:
    # Seven tiny trainings: each started in a fresh interpreter would pay seconds of imports for seconds
    # of steps, so the demo trains in its lane's process unless RADVLM_TRAINING_* variables say otherwise.
    return {**defs.resources, "training_launcher": training_launcher_from_environment(IN_PROCESS)}


def succeeded(run) -> bool:
    """A run's outcome; a lane that died (killed, out of memory) fails its stage instead of the demo."""
    try:
        return run.result()
    except Exception as exc:  # BrokenProcessPool, or an error raised outside the Dagster run
        print(f"  a lane failed: {exc!r}", file=sys.stderr, flush=True)
        return False


@contextlib.contextmanager
def pool_slots(instance: DagsterInstance, slots: int):
    """Each pool at least ``slots`` slots inside the block; a limit set by hand comes back after it, a
    pool on dagster.yaml's default goes back to the default. The limits to come back to are kept in a
    file under DAGSTER_HOME until they are back, so a demo killed before its end (kill -9, a closed
    terminal) is repaired by the next one rather than leaving its lent slots for good."""
    storage = instance.event_log_storage
    kept = Path(instance.root_directory) / "demo_pool_limits.json"

    def give_back(by_hand: dict) -> None:
        for pool in POOLS:
            if pool in by_hand:
                storage.set_concurrency_slots(pool, by_hand[pool])
            else:
                storage.delete_concurrency_limit(pool)
        kept.unlink(missing_ok=True)

    if kept.exists():
        give_back(json.loads(kept.read_text()))
    by_hand = {limit.name: limit.limit for limit in storage.get_pool_limits() if not limit.from_default}
    kept.write_text(json.dumps(by_hand))
    for pool in POOLS:
        storage.set_concurrency_slots(pool, max(slots, by_hand.get(pool, 0)))
    try:
        yield
    finally:
        give_back(by_hand)


def main() -> int:
    instance = DagsterInstance.get()
    asset_graph = defs.resolve_asset_graph()
    started = time.monotonic()
    done = []
    spawn = multiprocessing.get_context("spawn")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the pools' limits are put back on the way out
    with pool_slots(instance, LANES), contextlib.ExitStack() as open_lanes:
        lanes = open_lanes.enter_context(ProcessPoolExecutor(LANES, mp_context=spawn))
        # The dataset folders' fingerprints first, so the release sensor later sees only real changes.
        for partitions, keys in [(None, [RAW_DATASETS]), *stages(asset_graph)]:
            partition_keys = (
                partitions.get_partition_keys(dynamic_partitions_store=instance) if partitions else [None]
            )
            stage = Stage(keys, len(partition_keys))
            stage_started = time.monotonic()
            print(f"materializing {stage.label}", flush=True)
            names = [key.to_user_string() for key in keys]
            ordered = sorted(partition_keys, key=work_first) if partitions else [None]
            try:
                runs = {key: lanes.submit(_materialize, names, key) for key in ordered}
            except BrokenProcessPool:  # a lane died in the stage before: the next stages get new lanes
                lanes = open_lanes.enter_context(ProcessPoolExecutor(LANES, mp_context=spawn))
                runs = {key: lanes.submit(_materialize, names, key) for key in ordered}
            stage.failed_partitions = {key for key, run in runs.items() if not succeeded(run)}
            stage.seconds = time.monotonic() - stage_started
            done.append(stage)
    elapsed = time.monotonic() - started
    print()
    print(closing_table(instance, done))
    print()
    print(
        f"Materialized {len(asset_graph.materializable_asset_keys)} assets in {elapsed:.0f} s "
        f"({LANES} lanes) into the Dagster instance at {instance.root_directory}."
    )
    print(f"Data root: {layout.data_root()}   Outputs: {layout.storage_root()}")
    print(f"Results: {layout.StorageLayout(layout.storage_root()).results_tables}")
    print(f"Demo budget: {DEMO_OP_CONFIG} (run config of those materializations).")
    print("Open the UI on this instance: `make ui`, then http://127.0.0.1:3000")
    failures = [stage.label for stage in done if stage.failed]
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
