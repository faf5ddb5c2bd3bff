"""What reads the corpus: the manifest, the DuckDB catalog, the LLaVA export, the checks and Table 1."""

import json
import os
import shutil

import duckdb
import polars as pl
import pytest
import yaml
from corpus_fixtures import EXPECTED_EVAL_ROWS, EXPECTED_TRAINING_ROWS, build_fixture_corpus

from radvlm_pipeline.corpus import checks
from radvlm_pipeline.corpus.catalog import write_catalog
from radvlm_pipeline.corpus.llava import export_llava, image_roots
from radvlm_pipeline.corpus.report import sample_instructions, table1_markdown
from radvlm_pipeline.corpus.shards import (
    partition_manifests,
    sha256_file,
    shard_paths,
    write_corpus_manifest,
    write_partition,
)
from radvlm_pipeline.layout import StorageLayout

IMAGE_DATASETS = ["chexpert", "chexpert_plus", "mimic_cxr", "padchest_gr", "vindr_cxr_png"]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    roots = build_fixture_corpus(tmp_path_factory.mktemp("corpus"))
    write_corpus_manifest(StorageLayout(roots.storage_root).corpus)
    write_catalog(StorageLayout(roots.storage_root).corpus)
    return roots


@pytest.fixture
def root(roots):
    return StorageLayout(roots.storage_root).corpus


def test_manifest_counts_and_hashes_match_the_files(root):
    manifest = json.loads(root.manifest.read_text())
    assert manifest["training_rows"] == sum(EXPECTED_TRAINING_ROWS.values())
    assert manifest["evaluation_rows"] == sum(EXPECTED_EVAL_ROWS.values())
    for key, partition in manifest["partitions"].items():
        for record in partition["files"]:
            path = root.partition(key) / record["file"]
            assert sha256_file(path) == record["sha256"]
            assert pl.read_parquet(path).height == record["rows"]


def test_catalog_answers_sql_about_the_corpus(root):
    with duckdb.connect(str(root.catalog), read_only=True) as con:
        table1 = {(t, s): (n, k) for t, s, n, k, _ in con.execute("SELECT * FROM table1").fetchall()}
        assert table1[("abnormality_grounding", "vindr_cxr")] == (9, 3)
        assert table1[("grounded_conversation", "ms_cxr")] == (4, 1)
        assert con.execute("SELECT count(*) FROM corpus").fetchone()[0] == sum(
            EXPECTED_TRAINING_ROWS.values()
        )
        assert con.execute("SELECT count(*) FROM evaluation").fetchone()[0] == sum(
            EXPECTED_EVAL_ROWS.values()
        )
        assert con.execute("SELECT count(*) FROM eval_classification").fetchone()[0] == 2
        assert con.execute("SELECT sum(rows) FROM manifest WHERE kind = 'training'").fetchone()[0] == sum(
            EXPECTED_TRAINING_ROWS.values()
        )
        first_turn = con.execute(
            "SELECT conversation[1].value FROM corpus WHERE id = 'phrase_grounding__ms_cxr:ms1_0_0:0'"
        ).fetchone()[0]
        assert first_turn.startswith("<image>\n")


def test_llava_export_resolves_images_and_lists_a_mixture(roots, root):
    roots_by_dataset = image_roots(IMAGE_DATASETS, roots.data_root, roots.storage_root)
    written = export_llava(root, roots_by_dataset)
    assert written == {f"{key}.json": rows for key, rows in EXPECTED_TRAINING_ROWS.items()}
    records = json.loads((root.llava / "phrase_grounding__ms_cxr.json").read_text())
    assert set(records[0]) == {"id", "image", "conversations"}
    assert records[0]["conversations"][0] == {
        "from": "human",
        "value": records[0]["conversations"][0]["value"],
    }
    for key in EXPECTED_TRAINING_ROWS:
        for record in json.loads((root.llava / f"{key}.json").read_text()):
            assert record["image"].startswith("/") and os.path.isfile(record["image"])
    mixture = yaml.safe_load(root.llava_mixture.read_text())
    assert sorted(d["json_path"].rsplit("/", 1)[1] for d in mixture["datasets"]) == sorted(written)
    assert {d["sampling_strategy"] for d in mixture["datasets"]} == {"all"}


def test_llava_export_uses_configured_roots(roots, root):
    moved = image_roots(IMAGE_DATASETS, roots.data_root, roots.storage_root, {"mimic_cxr": "/scratch/mimic"})
    export_llava(root, moved)
    records = json.loads((root.llava / "conversation__mimic_cxr.json").read_text())
    assert records[0]["image"] == "/scratch/mimic/files/p10/p10000001/s50000001/m1a.jpg"
    with pytest.raises(KeyError, match="no image root"):
        export_llava(root, {"mimic_cxr": roots.data_root})


def test_checks_pass_on_a_sound_corpus(roots, root):
    for outcome in (
        checks.no_held_out_patient_in_training(root),
        checks.images_exist(root, roots.data_root, roots.storage_root),
        checks.boxes_in_range(root),
        checks.answers_parse_back(root),
    ):
        assert outcome.passed and outcome.checked > 0, outcome


def test_checks_name_the_rows_that_break_them(roots, tmp_path):
    root = StorageLayout(roots.storage_root).corpus
    good = (
        pl.read_parquet(shard_paths(root))
        .filter(pl.col("task") == "abnormality_grounding")
        .sort("id")
        .head(4)
    )
    bad = good.with_columns(
        id=pl.format("bad:{}", pl.int_range(pl.len())),
        split=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("test")).otherwise(pl.col("split")),
        source_ids=pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.lit(["subject:v4"]))
        .otherwise(pl.col("source_ids")),
        image_path=pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit("train/missing.png"))
        .otherwise(pl.col("image_path")),
        target_boxes=pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit([[0.5, 0.5, 1.2, 0.4]], dtype=good.schema["target_boxes"]))
        .otherwise(pl.col("target_boxes")),
    )
    bad_dir = root.partition("bad__rows")
    write_partition(bad, bad_dir, 100, 3, {"partition": "bad__rows"})
    try:
        leak = checks.no_held_out_patient_in_training(root)
        assert not leak.passed and leak.problems == 2
        assert any(e.startswith("bad:0: built from a test-split image") for e in leak.examples)
        assert any(e.startswith("bad:1: patient v4") for e in leak.examples)
        missing = checks.images_exist(root, roots.data_root, roots.storage_root)
        assert missing.problems == 1 and "train/missing.png" in missing.examples[0]
        boxes = checks.boxes_in_range(root)
        assert boxes.problems == 1 and boxes.examples[0].startswith("bad:3")
        parse = checks.answers_parse_back(root)
        assert parse.problems == 1 and parse.examples[0].startswith("bad:3")
    finally:
        shutil.rmtree(bad_dir)


def test_table_1_is_recomputed_from_the_files(root):
    manifest = write_corpus_manifest(root)
    table = table1_markdown(manifest)
    assert "| abnormality_grounding | vindr_cxr | 3 × 3 = 9 | 1 | 16,089 × 3 | 2,108 |" in table
    assert "| anatomical_grounding | chest_imagenome | 2 × 1 = 2 | 2 | 80,000 × 1 | 2,000 |" in table
    assert (
        f"| **Total** | | **{sum(EXPECTED_TRAINING_ROWS.values())}** | **{sum(EXPECTED_EVAL_ROWS.values())}**"
        in table
    )
    assert table.splitlines()[2].startswith("| report_generation | mimic_cxr |")


def test_sample_instructions_show_each_task_readably(root):
    rows = pl.read_parquet(shard_paths(root))
    text = sample_instructions(rows)
    for task in rows["task"].unique().to_list():
        assert f"**{task}**" in text
    assert "&lt;image>" in text and "<image>" not in text


def test_partition_manifests_ignore_staging_folders(root):
    (root.shards / "phrase_grounding__ms_cxr.tmp").mkdir(exist_ok=True)
    assert "phrase_grounding__ms_cxr.tmp" not in partition_manifests(root)
