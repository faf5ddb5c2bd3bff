"""The daemon's part in the automation tests, played in-process: execute what the sensors and the automation
conditions request, one run per request, and read every asset's stale status as the UI computes it."""

from __future__ import annotations

from collections import defaultdict

from dagster import AssetKey, DagsterInstance, evaluate_automation_conditions, materialize
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from definitions import defs

EVERYTHING = [*defs.assets, *defs.asset_checks]
GRAPH = defs.resolve_asset_graph()
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


class Daemon:
    """Executes what the sensor and the automation conditions request, recording what ran."""

    def __init__(self, instance: DagsterInstance, resources: dict):
        self.instance = instance
        self.resources = resources
        self.cursor = None
        self.ran: dict[str, list[str | None]] = defaultdict(list)  # asset -> partitions, in order

    def execute(
        self,
        keys: list[AssetKey],
        partition_key: str | None = None,
        tags: dict | None = None,
        run_config: dict | None = None,
    ) -> None:
        result = materialize(
            EVERYTHING,
            selection=keys,
            partition_key=partition_key,
            instance=self.instance,
            resources=self.resources,
            tags=tags,
            run_config={**QUIET, **(run_config or {})},
        )
        assert result.success, keys
        for key in keys:
            self.ran[key.to_user_string()].append(partition_key)

    def tick_automation(self) -> dict[AssetKey, set[str | None]]:
        result = evaluate_automation_conditions(defs=defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return {
            key: set(result.get_requested_partitions(key))
            for key in GRAPH.get_all_asset_keys()
            if result.get_num_requested(key)
        }

    def execute_requests(self, requested: dict[AssetKey, set[str | None]]) -> None:
        unpartitioned = [key for key, partitions in requested.items() if partitions == {None}]
        if unpartitioned:  # compatible assets requested together run together, as the sensor does
            self.execute(unpartitioned)
        for key, partitions in requested.items():
            for partition in sorted(p for p in partitions if p is not None):
                self.execute([key], partition)

    def run_automation_until_quiet(self, max_ticks: int = 8) -> int:
        for tick in range(max_ticks):
            requested = self.tick_automation()
            if not requested:
                return tick
            self.execute_requests(requested)
        raise AssertionError(f"still requesting after {max_ticks} ticks")


def stale_assets(instance: DagsterInstance) -> dict[str, list[str]]:
    """Every stale materializable asset (partition) with the root causes the UI lists, as
    ``{"asset[partition]": ["reason: dependency[partition]", ...]}``; fresh and missing ones left out."""
    resolver = CachingStaleStatusResolver(instance, GRAPH, LoadingContextForTest(instance))
    stale = {}
    for key in sorted(GRAPH.materializable_asset_keys):
        partitions_def = GRAPH.get(key).partitions_def
        for partition in partitions_def.get_partition_keys() if partitions_def else [None]:
            if resolver.get_status(key, partition) != StaleStatus.STALE:
                continue
            name = key.to_user_string() + (f"[{partition}]" if partition else "")
            stale[name] = sorted(
                f"{cause.reason}: {_name(cause.dependency)}" if cause.dependency else cause.reason
                for cause in resolver.get_stale_causes(key, partition)
            )
    return stale


def _name(asset_partition) -> str:
    key = asset_partition.asset_key.to_user_string()
    return key + (f"[{asset_partition.partition_key}]" if asset_partition.partition_key else "")
