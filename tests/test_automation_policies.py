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

from assets.corpus_inputs import CORPUS_INPUTS
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
def files_under(folder: Path) -> int:
    return sum(
        1
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def test_fingerprints_stamp_every_file_of_each_dataset(data_root):
    found = releases.fingerprints(data_root)
    assert list(found) == list(DATASETS)
    assert {d: f.files for d, f in found.items()} == {
        d: files_under(DATASETS[d].root(data_root)) for d in DATASETS
    }
    assert found["mimic_cxr"].files > 300  # tables, every report text and every JPEG
    assert not any(f.by_content for f in found.values())
    assert releases.fingerprints(data_root) == found  # nothing changed, same versions


def test_a_report_edited_in_place_changes_its_dataset_only(data_root):
    before = releases.fingerprints(data_root)
    report = next((data_root / "mimic-cxr" / "files").rglob("s*.txt"))
    report.write_text(report.read_text().replace("FINDINGS:", "FINDINGS: Small right effusion.", 1))
    after = releases.fingerprints(data_root)
    assert [d for d in DATASETS if after[d].version != before[d].version] == ["mimic_cxr"]
    assert after["mimic_cxr"].files == before["mimic_cxr"].files


@pytest.mark.parametrize(
    "change",
    [
        "touch a file",
        "edit a scene graph in place",
        "add a file",
        "remove a file",
        "rename a file",
    ],
)
def test_every_kind_of_file_change_is_noticed(data_root, change):
    graphs = data_root / "chest-imagenome" / "silver_dataset" / "scene_graph"
    graph = sorted(graphs.iterdir())[0]
    folder_mtime = graphs.stat().st_mtime_ns
    before = releases.fingerprint("chest_imagenome", data_root).version
    if change == "touch a file":
        bump_mtime(graph)
    elif change == "edit a scene graph in place":
        graph.write_text(graph.read_text().replace('"x1": ', '"x1": 1', 1))
        os.utime(graphs, ns=(folder_mtime, folder_mtime))  # the folder's own time says nothing
    elif change == "add a file":
        shutil.copy(graph, graphs / "new_SceneGraph.json")
    elif change == "remove a file":
        graph.unlink()
    else:
        graph.rename(graphs / ("z" + graph.name))
    assert releases.fingerprint("chest_imagenome", data_root).version != before


def test_hidden_files_and_a_missing_folder(data_root):
    before = releases.fingerprint("vindr_cxr", data_root)
    (data_root / "vindr-cxr" / ".DS_Store").write_bytes(b"\0")
    (data_root / "vindr-cxr" / "annotations" / ".~lock.annotations_train.csv#").write_text("x")
    assert releases.fingerprint("vindr_cxr", data_root) == before
    shutil.rmtree(data_root / "ms-cxr")
    assert releases.fingerprint("ms_cxr", data_root) == releases.DatasetFingerprint(
        "ms_cxr", releases.ABSENT, 0, False
    )


def test_the_content_setting_sees_an_edit_that_kept_size_and_time(data_root, monkeypatch):
    table = data_root / "vindr-cxr" / "annotations" / "annotations_train.csv"
    stamp = table.stat()
    by_stat = releases.fingerprint("vindr_cxr", data_root)
    monkeypatch.setenv(releases.FINGERPRINT_CONTENT_ENV, "vindr_cxr, ms_cxr")
    by_content = releases.fingerprints(data_root)
    assert by_content["vindr_cxr"].by_content and by_content["ms_cxr"].by_content
    assert not by_content["mimic_cxr"].by_content
    assert by_content["mimic_cxr"] == releases.fingerprint("mimic_cxr", data_root, by_content=False)

    text = table.read_text()
    digit = next(c for c in text if c.isdigit())
    table.write_text(text.replace(digit, str((int(digit) + 1) % 10), 1))  # same size
    os.utime(table, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # same time
    assert releases.fingerprint("vindr_cxr", data_root, by_content=False) == by_stat
    assert releases.fingerprints(data_root)["vindr_cxr"].version != by_content["vindr_cxr"].version


def test_the_content_setting_names_datasets_or_all():
    assert releases.content_hashed_datasets("") == frozenset()
    assert releases.content_hashed_datasets("all") == frozenset(DATASETS)
    with pytest.raises(ValueError, match="unknown datasets \\['mimic'\\].*mimic_cxr, chexpert"):
        releases.content_hashed_datasets("mimic")


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


def test_a_corpus_partition_depends_on_the_rows_it_draws_only():
    corpus = GRAPH.get(AssetKey("corpus"))
    assert corpus.parent_keys == {CORPUS_INPUTS}  # partition to partition: no unpartitioned upstream
    drawn = GRAPH.get(CORPUS_INPUTS)
    assert drawn.is_observable and drawn.partitions_def == corpus.partitions_def
    assert {key.to_user_string() for key in drawn.parent_keys} == {
        *DATASETS,
        "reports_without_priors",
        "conversations",
        "corpus_eval_sets",
    }


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
