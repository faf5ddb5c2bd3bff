"""The corpus assets in Dagster: partitions are Table 1 rows, checks run on the whole corpus and block the export."""

import pytest
from corpus_fixtures import EXPECTED_TRAINING_ROWS, write_corpus_inputs
from dagster import DagsterInstance, materialize

from assets.corpus import (
    CORPUS_PARTITIONS,
    corpus,
    corpus_catalog,
    corpus_checks,
    corpus_eval_sets,
    corpus_llava_export,
)
from radvlm_pipeline.corpus.table import partition_keys
from radvlm_pipeline.layout import StorageLayout
from resources.storage import PipelineStorage


def test_partitions_are_the_table_1_rows():
    assert CORPUS_PARTITIONS.get_partition_keys() == partition_keys()
    assert corpus.group_names_by_key[corpus.key] == "corpus"


@pytest.fixture
def run(tmp_path):
    roots = write_corpus_inputs(tmp_path / "data", tmp_path / "storage")
    resources = {
        "storage": PipelineStorage(data_root=str(roots.data_root), storage_root=str(roots.storage_root))
    }
    instance = DagsterInstance.ephemeral()

    def materialize_corpus(partitions, **kwargs):
        assert materialize([corpus_eval_sets], resources=resources, instance=instance).success
        for key in partitions:
            assert materialize([corpus], partition_key=key, resources=resources, instance=instance).success
        return materialize(
            [corpus_catalog, corpus_llava_export, *corpus_checks],
            resources=resources,
            instance=instance,
            **kwargs,
        )

    return roots, materialize_corpus


@pytest.mark.slow
def test_materialize_partitions_then_catalog_checks_and_export(run):
    roots, materialize_corpus = run
    keys = ["phrase_grounding__ms_cxr", "abnormality_detection__vindr_cxr", "report_generation__mimic_cxr"]
    result = materialize_corpus(keys)
    assert result.success
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {
        "no_test_patient_in_training": True,
        "every_image_exists": True,
        "every_box_in_range": True,
        "every_answer_parses_back": True,
    }
    catalog = result.asset_materializations_for_node("corpus_catalog")[0].metadata
    assert catalog["dagster/row_count"].value == sum(EXPECTED_TRAINING_ROWS[k] for k in keys)
    assert "| phrase_grounding | ms_cxr | 2 × 3 = 6 |" in catalog["table_1"].value
    assert "**abnormality_detection**" in catalog["sample_instructions"].value
    export = result.asset_materializations_for_node("corpus_llava_export")[0].metadata
    assert export["dagster/row_count"].value == catalog["dagster/row_count"].value
    assert sorted(p.name for p in StorageLayout(roots.storage_root).corpus.llava.iterdir()) == sorted(
        [f"{k}.json" for k in keys] + ["train.yaml"]
    )


@pytest.mark.slow
def test_a_failed_check_blocks_the_llava_export(run):
    roots, materialize_corpus = run
    (roots.storage_root / "derived" / "vindr-cxr-png" / "train" / "v1.png").unlink()
    result = materialize_corpus(["abnormality_detection__vindr_cxr"], raise_on_error=False)
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {"every_image_exists"}
    assert not result.asset_materializations_for_node("corpus_llava_export")


@pytest.mark.slow
def test_backfilling_one_partition_from_the_cli_rebuilds_only_that_row(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from corpus_fixtures import build_fixture_corpus

    from radvlm_pipeline.corpus.shards import partition_manifests, shard_paths

    roots = build_fixture_corpus(tmp_path / "corpus")
    root = StorageLayout(roots.storage_root).corpus
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in shard_paths(root)}
    manifests = partition_manifests(root)
    module = tmp_path / "corpus_cli_defs.py"
    module.write_text(
        "from dagster import Definitions\n"
        "from assets.corpus import corpus_assets, corpus_checks\n"
        "from resources.storage import PipelineStorage\n"
        f"storage = PipelineStorage(data_root={str(roots.data_root)!r}, storage_root={str(roots.storage_root)!r})\n"
        "defs = Definitions(assets=corpus_assets, asset_checks=corpus_checks, resources={'storage': storage})\n"
    )
    project = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(project), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    (tmp_path / "dagster_home").mkdir()
    key = "abnormality_grounding__vindr_cxr"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-f",
            str(module),
            "--select",
            "corpus",
            "--partition",
            key,
            "--config-json",
            '{"ops": {"corpus": {"config": {"rows_per_shard": 2}}}}',
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for path, (mtime, content) in before.items():
        rebuilt = path.stat().st_mtime_ns != mtime
        assert rebuilt == (key in str(path)), path
        assert path.read_bytes() == content  # same inputs and config: same bytes
    assert partition_manifests(root) == manifests
