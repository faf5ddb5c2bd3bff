"""The README's CLI commands against the project's code location, in subprocesses, on a fresh Dagster home:
materialize chosen partitions (a corpus row, a model's evaluation), backfill a job's chosen partitions and
wait for its runs (``sensors/cli.py``, behind ``make backfill`` / ``make wait-backfill``); a wrong
partition key through the project's entry point lists the valid keys."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, materialize

from definitions import defs
from radvlm_pipeline.corpus.table import partition_keys
from radvlm_pipeline.datasets import DATASETS
from radvlm_pipeline.layout import BUNDLED_SAMPLE_ROOT, DATA_ROOT_ENV, PROJECT_ROOT, STORAGE_ROOT_ENV
from resources.llm import LLMResource
from resources.storage import PipelineStorage
from sensors.cli import main

UP_TO_THE_EVALUATION_SETS = [*DATASETS, "reports_without_priors", "conversations", "corpus_eval_sets"]


def build_upstream_of_the_corpus(home, storage_root) -> None:
    """What the corpus rows are built from, in this process (offline LLM rules), into the CLI's instance."""
    storage = PipelineStorage(data_root=str(BUNDLED_SAMPLE_ROOT), storage_root=str(storage_root))
    resources = {**defs.resources, "storage": storage, "llm": LLMResource(storage=storage)}
    with DagsterInstance.from_config(str(home)) as instance:
        assert materialize(
            [*defs.assets, *defs.asset_checks],
            selection=UP_TO_THE_EVALUATION_SETS,
            resources=resources,
            instance=instance,
        ).success


@pytest.fixture
def cli(tmp_path):
    """Runs `dagster ...` in the project as the README does, with its own DAGSTER_HOME and storage root."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        DATA_ROOT_ENV: str(BUNDLED_SAMPLE_ROOT),
        STORAGE_ROOT_ENV: str(tmp_path / "storage"),
    }
    env.pop("RADVLM_LLM_BACKEND", None)  # the offline LLM rules

    def run(*args: str, module: str = "dagster") -> str:
        completed = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        return completed.stdout + completed.stderr

    run.home = home
    run.storage = tmp_path / "storage"
    return run


def latest_materializations(instance: DagsterInstance, asset: str) -> dict[str | None, dict]:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset)), limit=100
    ).records
    found = {}
    for record in records:  # newest first
        materialization = record.asset_materialization
        found.setdefault(materialization.partition, materialization.metadata)
    return found


@pytest.mark.slow
def test_materialize_chosen_partitions_and_backfill_a_job_from_the_cli(cli):
    build_upstream_of_the_corpus(cli.home, cli.storage)
    cli(
        "asset",
        "materialize",
        "-f",
        "definitions.py",
        "--select",
        "corpus",
        "--partition",
        "report_generation__mimic_cxr",
    )
    shards = cli.storage / "corpus" / "shards"
    assert [p.name for p in shards.iterdir()] == ["report_generation__mimic_cxr"]  # that row only
    cli(
        "asset",
        "materialize",
        "-f",
        "definitions.py",
        "--select",
        "eval_answers,eval_classification",
        "--partition",
        "oracle",
    )
    # The command returns once the runs are submitted; the project's `wait` returns when they ended.
    launched = cli(
        "job",
        "backfill",
        "-f",
        "definitions.py",
        "-j",
        "corpus_rows",
        "--noprompt",
        "--partitions",
        "classification__chexpert,phrase_grounding__ms_cxr",
        "--tags",
        '{"requested_by": "test"}',
    )
    [backfill_id] = re.findall(r"Launched backfill job `([^`]+)`", launched)
    waited = cli("wait", backfill_id, "--timeout", "240", module="sensors.cli")
    assert waited.strip().endswith(
        f"backfill {backfill_id}: classification__chexpert: SUCCESS, phrase_grounding__ms_cxr: SUCCESS"
    )

    rows = ["classification__chexpert", "phrase_grounding__ms_cxr", "report_generation__mimic_cxr"]
    assert sorted(p.name for p in shards.iterdir()) == rows
    with DagsterInstance.from_config(str(cli.home)) as instance:
        corpus = latest_materializations(instance, "corpus")
        assert sorted(corpus) == rows and all(m["dagster/row_count"].value > 0 for m in corpus.values())
        oracle = latest_materializations(instance, "eval_classification")["oracle"]
        assert oracle["status"].text == "scored" and oracle["macro_f1"].value == pytest.approx(100.0)
        [backfill] = instance.get_backfills()
        assert backfill.job_name == "corpus_rows" and backfill.tags == {"requested_by": "test"}
        assert sorted(backfill.partition_names) == rows[:2]
        runs = instance.get_run_records()
        assert {
            r.dagster_run.tags["dagster/partition"] for r in runs if r.dagster_run.job_name == "corpus_rows"
        } == set(rows[:2])
        assert {r.dagster_run.status.value for r in runs} == {"SUCCESS"}


@pytest.mark.parametrize(
    "args",
    [
        ["materialize", "--select", "corpus", "--partition", "report_generation_mimic_cxr"],
        [
            "backfill",
            "--job",
            "corpus_rows",
            "--partitions",
            "classification__chexpert,report_generation_mimic_cxr",
        ],
    ],
)
def test_a_wrong_partition_key_lists_the_valid_keys_without_a_traceback(args, capsys):
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"error: no partition 'report_generation_mimic_cxr' of {'corpus' if args[0] == 'materialize' else 'job corpus_rows'}; valid keys:",
        *(f"  {key}" for key in partition_keys()),
    ]


def test_backfill_refuses_an_empty_partition_list_which_dagster_would_take_for_all(capsys):
    assert main(["backfill", "--job", "training_recipes", "--partitions", " , "]) == 2
    assert capsys.readouterr().err.startswith(
        "error: name the partitions of job training_recipes, or ask for all"
    )
