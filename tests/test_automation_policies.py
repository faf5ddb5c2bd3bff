"""Release fingerprints, the release sensor, the re-evaluation schedule and the policies the assets declare."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    QueuedRunCoordinator,
    RunRequest,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    materialize,
)

from assets.policies import GPU_INFERENCE_POOL, LLM_POOL, TRAINING_POOL
from definitions import defs
from radvlm_pipeline import releases
from radvlm_pipeline.datasets import DATASETS
from radvlm_pipeline.layout import BUNDLED_SAMPLE_ROOT, PROJECT_ROOT
from resources.storage import PipelineStorage
from sensors.dataset_releases import CHANGED_DATASETS_TAG, dataset_releases, raw_datasets, recorded_versions
from sensors.schedules import weekly_reevaluation

GRAPH = defs.resolve_asset_graph()


@pytest.fixture
def data_root(tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(BUNDLED_SAMPLE_ROOT, root)
    return root


def bump_mtime(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


# --- Fingerprints --------------------------------------------------------------------------------------------
def test_fingerprints_stamp_the_index_files_of_each_dataset(data_root):
    found = releases.fingerprints(data_root)
    assert set(found) == set(DATASETS)
    assert [s.path for s in found["mimic_cxr"].files] == [
        "mimic-cxr-2.0.0-chexpert.csv.gz",
        "mimic-cxr-2.0.0-metadata.csv.gz",
        "mimic-cxr-2.0.0-split.csv.gz",
    ]
    assert [s.path for s in found["chest_imagenome"].files] == [
        "silver_dataset/scene_graph",
        "silver_dataset/splits/test.csv",
        "silver_dataset/splits/train.csv",
        "silver_dataset/splits/valid.csv",
    ]
    assert [s.path for s in found["chexpert"].files] == [
        "CheXpert-v1.0-small/train.csv",
        "CheXpert-v1.0-small/valid.csv",
        "CheXpert/test_labels.csv",
    ]
    assert [s.path for s in found["padchest_gr"].files] == [
        "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv",
        "grounded_reports_20240819.json",
        "master_table.csv",
    ]
    assert all(f.files for f in found.values())
    assert releases.fingerprints(data_root) == found  # nothing changed, same versions


def test_a_changed_index_file_changes_its_dataset_only_and_image_files_are_not_read(data_root):
    before = releases.fingerprints(data_root)
    for image in (data_root / "mimic-cxr" / "files").rglob("*.jpg"):
        bump_mtime(image)
    assert releases.fingerprints(data_root) == before
    bump_mtime(data_root / "vindr-cxr" / "annotations" / "annotations_train.csv")
    after = releases.fingerprints(data_root)
    assert [d for d in DATASETS if after[d].version != before[d].version] == ["vindr_cxr"]


def test_a_new_scene_graph_changes_chest_imagenome_and_a_missing_folder_is_absent(data_root):
    before = releases.fingerprints(data_root)
    graphs = data_root / "chest-imagenome" / "silver_dataset" / "scene_graph"
    shutil.copy(next(graphs.iterdir()), graphs / "new_SceneGraph.json")
    assert releases.fingerprint("chest_imagenome", data_root).version != before["chest_imagenome"].version
    shutil.rmtree(data_root / "ms-cxr")
    assert releases.fingerprint("ms_cxr", data_root) == releases.DatasetFingerprint(
        "ms_cxr", releases.ABSENT, ()
    )


@pytest.mark.parametrize(
    "dataset, partitions",
    [
        (
            "mimic_cxr",
            {
                "report_generation__mimic_cxr",
                "classification__mimic_cxr",
                "anatomical_grounding__chest_imagenome",
                "phrase_grounding__ms_cxr",
                "conversation__mimic_cxr",
                "grounded_conversation__ms_cxr",
            },
        ),
        ("chexpert", {"classification__chexpert", "report_generation__chexpert_plus"}),
        ("vindr_cxr", {"abnormality_grounding__vindr_cxr", "abnormality_detection__vindr_cxr"}),
        ("padchest_gr", {"phrase_grounding__padchest_gr", "grounded_conversation__padchest_gr"}),
    ],
)
def test_a_release_changes_the_corpus_rows_of_its_patients(dataset, partitions):
    assert set(releases.corpus_partitions_changed_by(dataset)) == partitions


# --- The release sensor --------------------------------------------------------------------------------------
def test_the_sensor_observes_the_folders_when_they_differ_from_the_recorded_versions(data_root, tmp_path):
    storage = PipelineStorage(data_root=str(data_root), storage_root=str(tmp_path / "storage"))
    instance = DagsterInstance.ephemeral()

    def tick():
        return dataset_releases(build_sensor_context(instance=instance, resources={"storage": storage}))

    def observe(request: RunRequest):
        assert materialize(
            [raw_datasets],
            selection=[raw_datasets.key],
            resources={"storage": storage},
            instance=instance,
            tags=request.tags,
        ).success

    first = tick()  # never observed: every dataset is new
    assert isinstance(first, RunRequest) and first.tags[CHANGED_DATASETS_TAG] == ",".join(DATASETS)
    observe(first)
    assert recorded_versions(instance) == {d: f.version for d, f in releases.fingerprints(data_root).items()}
    assert isinstance(tick(), SkipReason)

    bump_mtime(data_root / "padchest-gr" / "master_table.csv")
    shutil.rmtree(data_root / "chexpert")
    changed = tick()
    assert changed.tags[CHANGED_DATASETS_TAG] == "chexpert,padchest_gr"
    observe(changed)
    assert recorded_versions(instance)["chexpert"] == releases.ABSENT
    assert isinstance(tick(), SkipReason)


# --- Schedule, sensors, jobs ---------------------------------------------------------------------------------
def test_the_weekly_reevaluation_asks_one_run_per_model_and_is_off_by_default():
    tick = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    requests = weekly_reevaluation(build_schedule_context(scheduled_execution_time=tick))
    models = GRAPH.get(AssetKey("eval_answers")).partitions_def.get_partition_keys()
    assert [r.partition_key for r in requests] == models and "oracle" in models
    assert {r.run_key for r in requests} == {f"2026-11-29T03:00/{m}" for m in models}
    assert weekly_reevaluation.default_status == DefaultScheduleStatus.STOPPED
    assert weekly_reevaluation.cron_schedule == "0 3 * * 0"
    job = defs.resolve_job_def("model_evaluation")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "eval_answers",
        *(
            k.to_user_string()
            for k in GRAPH.get_all_asset_keys()
            if k.to_user_string().startswith("eval_") and k.to_user_string() != "eval_answers"
        ),
    }


def test_sensors_are_off_until_turned_on():
    assert {s.name: s.default_status for s in defs.sensors} == {
        "dataset_releases": DefaultSensorStatus.STOPPED,
        "automation_conditions": DefaultSensorStatus.STOPPED,
    }


def test_backfill_jobs_cover_corpus_rows_recipes_and_models():
    partitions = {
        name: defs.resolve_job_def(name).partitions_def.get_partition_keys()
        for name in ("corpus_rows", "training_recipes", "model_evaluation")
    }
    assert (
        "report_generation__mimic_cxr" in partitions["corpus_rows"] and len(partitions["corpus_rows"]) == 12
    )
    assert "all" in partitions["training_recipes"] and "oracle" in partitions["model_evaluation"]


# --- What the assets declare ---------------------------------------------------------------------------------
def test_only_data_preparation_reruns_by_itself_and_results_tables_follow_evaluations():
    automated = {k.to_user_string() for k in GRAPH.get_all_asset_keys() if GRAPH.get(k).automation_condition}
    assert automated == {
        *DATASETS,
        "reports_without_priors",
        "conversations",
        "corpus_eval_sets",
        "corpus",
        "corpus_catalog",
        "corpus_llava_export",
        "results_tables",
    }  # not raw_datasets (the sensor observes it), not base/fine-tuned models, answers or metrics


def test_pools_and_retries():
    nodes = {key.to_user_string(): GRAPH.get(key) for key in GRAPH.get_all_asset_keys()}
    pools = {name: node.pools for name, node in nodes.items() if node.pools}
    assert pools == {
        "reports_without_priors": {LLM_POOL},
        "conversations": {LLM_POOL},
        "eval_report_generation": {LLM_POOL},
        "eval_conversation": {LLM_POOL},
        "eval_grounded_conversation": {LLM_POOL},
        "finetuned_model": {TRAINING_POOL},
        "eval_answers": {GPU_INFERENCE_POOL},
    }
    assets_by_name = {a.key.to_user_string(): a for a in defs.assets if hasattr(a, "op")}
    retried = {name: a.op.retry_policy for name, a in assets_by_name.items() if a.op.retry_policy}
    assert set(retried) == {"reports_without_priors", "conversations", "finetuned_model"}
    assert all(policy.backoff is not None and policy.max_retries >= 1 for policy in retried.values())


def test_the_instance_settings_limit_every_pool_and_keep_the_ui_defaults(tmp_path):
    shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1 and pools.pool_granularity.value == "op"
        assert not isinstance(instance.run_coordinator, QueuedRunCoordinator)  # runs start without the daemon
        assert not instance.nux_enabled
