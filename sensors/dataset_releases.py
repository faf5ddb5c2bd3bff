"""The dataset folders as an observed asset, and the sensor that notices a release or a correction in them.

``raw_datasets`` has one partition per dataset; observing it records each folder's fingerprint
(``radvlm_pipeline.releases``: every file's path, size and modification time, or its content where
``RADVLM_FINGERPRINT_CONTENT`` asks) as that partition's data version. The ``dataset_releases`` sensor
compares the folders with the versions last recorded, every few minutes, and launches an observation when
one differs; the automation conditions of ``assets.policies`` then re-run what depends on the changed
datasets, and of the corpus only the partitions whose rows changed.
"""

from __future__ import annotations

import warnings

from dagster import (
    AssetRecordsFilter,
    AssetSelection,
    BetaWarning,
    DagsterInstance,
    DataVersion,
    DataVersionsByPartition,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    observable_source_asset,
    sensor,
)

from assets.policies import DATASET_PARTITIONS, RAW_DATASETS
from radvlm_pipeline import releases
from radvlm_pipeline.datasets import DATASETS
from resources.storage import PipelineStorage

CHANGED_DATASETS_TAG = "radvlm/changed_datasets"

# Beta in Dagster 1.13, and the documented way to record data versions of partitions Dagster does not
# materialize: said once here rather than on every load of the code location and every observation.
warnings.filterwarnings(
    "ignore", r"(Function `observable_source_asset`|Class `DataVersionsByPartition`)", BetaWarning
)


@observable_source_asset(
    key=RAW_DATASETS,
    group_name="raw_data",
    partitions_def=DATASET_PARTITIONS,
    tags={"dagster/kind/csv": "", "dagster/kind/json": ""},
    description="The seven dataset folders under the data root, one partition each, as released. Observing "
    "them records a fingerprint of every file in each folder (path, size, modification time; or content, "
    "with RADVLM_FINGERPRINT_CONTENT) as the partition's data version; a new release or a file corrected "
    "in place changes it, and what was built from that dataset re-runs.",
)
def raw_datasets(context, storage: PipelineStorage) -> DataVersionsByPartition:
    versions = {}
    for dataset, found in releases.fingerprints(storage.data_path).items():
        versions[dataset] = DataVersion(found.version)
        stamp = "content" if found.by_content else "size and modification time"
        context.log.info(f"{dataset}: {found.version} from {found.files} file(s), by {stamp}")
    return DataVersionsByPartition(versions)


observe_dataset_folders = define_asset_job(
    "observe_dataset_folders",
    selection=AssetSelection.assets(RAW_DATASETS),
    description="Records the fingerprint of every dataset folder (raw_datasets).",
)


def recorded_versions(instance: DagsterInstance) -> dict[str, str | None]:
    """The data version last observed for each dataset (None if never observed)."""
    versions = {}
    for dataset in DATASETS:
        records = instance.fetch_observations(
            AssetRecordsFilter(asset_key=RAW_DATASETS, asset_partitions=[dataset]), limit=1
        ).records
        versions[dataset] = records[0].asset_observation.data_version if records else None
    return versions


def changed_datasets(instance: DagsterInstance, storage: PipelineStorage) -> list[str]:
    current = releases.fingerprints(storage.data_path)
    recorded = recorded_versions(instance)
    return [dataset for dataset, found in current.items() if recorded[dataset] != found.version]


@sensor(
    job=observe_dataset_folders,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.STOPPED,
    description="Every 5 minutes, fingerprints the dataset folders (one stat per file, seconds for a "
    "million files) and, when one differs from the version last recorded, observes raw_datasets; the "
    "automation conditions then re-run what depends on the changed datasets.",
)
def dataset_releases(context: SensorEvaluationContext, storage: PipelineStorage):
    changed = changed_datasets(context.instance, storage)
    if not changed:
        return SkipReason(f"no dataset folder under {storage.data_path} changed since it was last observed")
    context.log.info(f"changed since last observed: {', '.join(changed)}")
    return RunRequest(tags={CHANGED_DATASETS_TAG: ",".join(changed)})
