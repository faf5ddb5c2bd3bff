"""What each corpus partition draws (``corpus.lineage``): the digest moves with the rows a partition is
built from, and with nothing else, in any row order and in any process."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest
from corpus_fixtures import write_corpus_inputs
from dagster import AssetRecordsFilter, DagsterInstance, materialize

from assets.corpus_inputs import CORPUS_INPUTS, corpus_inputs
from radvlm_pipeline.corpus.build import build_eval_sets
from radvlm_pipeline.corpus.lineage import MISSING, draws, frame_digest
from radvlm_pipeline.corpus.table import partition_keys
from radvlm_pipeline.layout import CLEAN_REPORTS, PROJECT_ROOT, StorageLayout
from resources.storage import PipelineStorage


@pytest.fixture
def storage(tmp_path) -> StorageLayout:
    roots = write_corpus_inputs(tmp_path / "data", tmp_path / "storage")
    build_eval_sets(roots.storage_root)
    return StorageLayout(roots.storage_root)


def versions(storage: StorageLayout) -> dict[str, str]:
    return {key: found.version for key, found in draws(storage.root).items()}


def rewrite(storage: StorageLayout, source: str, table: str, change) -> None:
    path = storage.source_table(source, table)
    change(pl.read_parquet(path)).write_parquet(path)


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(key for key in before if before[key] != after[key])


def test_every_partition_draws_something_and_the_same_in_another_process(storage):
    found = draws(storage.root)
    assert list(found) == partition_keys()
    assert all(d.samples > 0 and not d.missing for d in found.values())
    assert found["classification__chexpert"].held_out_patients == 2  # c5, c6
    script = (
        "import sys, json; from pathlib import Path; from radvlm_pipeline.corpus.lineage import draws; "
        "print(json.dumps({k: d.version for k, d in draws(Path(sys.argv[1])).items()}))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, str(storage.root)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(other.stdout) == {k: d.version for k, d in found.items()}


def test_row_order_and_untouched_columns_leave_every_draw_as_it_is(storage):
    before = versions(storage)
    rewrite(storage, "mimic_cxr", "labels", lambda f: f.reverse())
    rewrite(storage, "vindr_cxr", "boxes", lambda f: f.sample(fraction=1.0, shuffle=True, seed=3))
    rewrite(storage, "mimic_cxr", "reports", lambda f: f.with_columns(report=pl.lit("rewritten")))
    assert versions(storage) == before  # the corpus reads clean reports, not the source's


def test_a_label_value_changes_only_the_partition_that_draws_it(storage):
    before = versions(storage)
    rewrite(
        storage,
        "mimic_cxr",
        "labels",
        lambda f: f.with_columns(
            Edema=pl.when(pl.col("study_id") == "50000001").then(True).otherwise(pl.col("Edema"))
        ),
    )
    assert changed(before, versions(storage)) == ["classification__mimic_cxr"]


def test_a_test_split_label_changes_no_training_draw(storage):
    before = versions(storage)
    rewrite(
        storage,
        "chexpert",
        "labels",
        lambda f: f.with_columns(
            Edema=pl.when(pl.col("image_id") == "c6").then(True).otherwise(pl.col("Edema"))
        ),
    )
    assert versions(storage) == before


def test_a_moved_box_changes_the_partitions_of_its_kind_only(storage):
    before = versions(storage)
    rewrite(
        storage,
        "vindr_cxr",
        "boxes",
        lambda f: f.with_columns(x1=pl.when(pl.col("image_id") == "v3").then(0.2).otherwise(pl.col("x1"))),
    )
    assert changed(before, versions(storage)) == [
        "abnormality_detection__vindr_cxr",
        "abnormality_grounding__vindr_cxr",
    ]


def test_a_clean_report_changes_report_generation_of_its_source(storage):
    before = versions(storage)
    path = storage.llm_output(CLEAN_REPORTS)
    clean = pl.read_parquet(path)
    clean.with_columns(
        report_clean=pl.when(pl.col("source") == "chexpert_plus")
        .then(pl.col("report_clean") + " Corrected.")
        .otherwise(pl.col("report_clean"))
    ).write_parquet(path)
    assert changed(before, versions(storage)) == ["report_generation__chexpert_plus"]


def test_new_held_out_patients_change_the_partitions_of_their_namespace(storage):
    before = versions(storage)
    rewrite(
        storage,
        "vindr_cxr",
        "images",
        lambda f: f.with_columns(
            split=pl.when(pl.col("image_id") == "v1").then(pl.lit("test")).otherwise("split")
        ),
    )
    build_eval_sets(storage.root)
    assert changed(before, versions(storage)) == [
        "abnormality_detection__vindr_cxr",
        "abnormality_grounding__vindr_cxr",
    ]


def test_a_missing_input_is_a_version_of_its_own_that_names_it(storage):
    storage.llm_output(CLEAN_REPORTS).unlink()
    found = draws(storage.root)
    missing = {key for key, d in found.items() if d.missing}
    assert missing == {"report_generation__mimic_cxr", "report_generation__chexpert_plus"}
    assert found["report_generation__mimic_cxr"].version.startswith(f"{MISSING}:")
    assert (
        "materialize the reports_without_priors asset first" in found["report_generation__mimic_cxr"].missing
    )


def test_frame_digest_is_order_free_and_sees_values_and_types():
    frame = pl.DataFrame({"a": [1, 2, 3], "b": [["x"], [], None]})
    assert frame_digest(frame) == frame_digest(frame.reverse())
    assert frame_digest(frame) != frame_digest(frame.with_columns(a=pl.Series([1, 2, 4])))
    assert frame_digest(frame) != frame_digest(frame.with_columns(pl.col("a").cast(pl.Int32)))
    assert frame_digest(frame.head(0)) != frame_digest(frame.head(0).rename({"a": "c"}))


def test_observing_corpus_inputs_records_each_partitions_draw(storage):
    resources = {"storage": PipelineStorage(data_root=str(storage.root), storage_root=str(storage.root))}
    with DagsterInstance.ephemeral() as instance:
        assert materialize(
            [corpus_inputs], selection=[CORPUS_INPUTS], resources=resources, instance=instance
        ).success
        records = instance.fetch_observations(AssetRecordsFilter(asset_key=CORPUS_INPUTS), limit=100).records
    observed = {r.asset_observation.partition: r.asset_observation for r in records}
    assert {key: o.tags["dagster/data_version"] for key, o in observed.items()} == versions(storage)
    assert observed["classification__chexpert"].metadata["held_out_patients"].value == 2
