"""Building the corpus from canonical tables: Table 1 counts, held-out patients, shards, determinism."""

import polars as pl
import pytest
from corpus_fixtures import (
    EXPECTED_EVAL_ROWS,
    EXPECTED_TRAINING_ROWS,
    build_fixture_corpus,
    write_corpus_inputs,
)

from radvlm_pipeline.boxes import parse_boxes
from radvlm_pipeline.corpus.build import build_eval_sets, build_partition
from radvlm_pipeline.corpus.inputs import CorpusInputMissing
from radvlm_pipeline.corpus.shards import eval_manifest, partition_manifests, shard_paths
from radvlm_pipeline.corpus.table import TABLE_1, CorpusConfig, partition_keys
from radvlm_pipeline.layout import CLEAN_REPORTS, CONVERSATIONS, StorageLayout
from radvlm_pipeline.schema import CORPUS_SCHEMA


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return build_fixture_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def rows(roots):
    return pl.read_parquet(shard_paths(StorageLayout(roots.storage_root).corpus))


def partition_rows(roots, key):
    manifest = partition_manifests(StorageLayout(roots.storage_root).corpus)[key]
    return pl.read_parquet(
        [StorageLayout(roots.storage_root).corpus.partition(key) / f["file"] for f in manifest["files"]]
    )


def test_partitions_are_the_table_1_rows():
    assert partition_keys() == [
        "report_generation__mimic_cxr",
        "report_generation__chexpert_plus",
        "classification__mimic_cxr",
        "classification__chexpert",
        "anatomical_grounding__chest_imagenome",
        "abnormality_grounding__vindr_cxr",
        "abnormality_detection__vindr_cxr",
        "phrase_grounding__ms_cxr",
        "phrase_grounding__padchest_gr",
        "conversation__mimic_cxr",
        "grounded_conversation__ms_cxr",
        "grounded_conversation__padchest_gr",
    ]
    factors = {row.key: (row.repeat, row.cap) for row in TABLE_1}
    assert factors["anatomical_grounding__chest_imagenome"] == (1, 80_000)
    assert factors["abnormality_grounding__vindr_cxr"] == (3, None)
    assert factors["abnormality_detection__vindr_cxr"] == (2, None)
    assert factors["phrase_grounding__ms_cxr"] == (3, None) and factors["phrase_grounding__padchest_gr"] == (
        2,
        None,
    )
    assert (
        factors["grounded_conversation__ms_cxr"] == (4, None) == factors["grounded_conversation__padchest_gr"]
    )


def test_row_counts_per_partition_and_evaluation_set(roots):
    root = StorageLayout(roots.storage_root).corpus
    assert {k: m["rows"] for k, m in partition_manifests(root).items()} == EXPECTED_TRAINING_ROWS
    assert {k: m["rows"] for k, m in eval_manifest(root).items()} == EXPECTED_EVAL_ROWS


def test_skipped_rows_are_counted_with_their_reason(roots):
    stats = {k: m["stats"] for k, m in partition_manifests(StorageLayout(roots.storage_root).corpus).items()}
    report = stats["report_generation__mimic_cxr"]
    assert report["skipped/report_nothing_left"] == 1 and report["skipped/report_failed"] == 1
    assert report["excluded/held_out_patient"] == 1
    assert stats["classification__mimic_cxr"]["skipped/no_labels"] == 1
    assert stats["anatomical_grounding__chest_imagenome"]["skipped/no_region_boxes"] == 1
    assert stats["conversation__mimic_cxr"]["skipped/malformed_conversation"] == 1


def test_patients_held_out_by_any_evaluation_set_are_not_trained_on(rows):
    images = rows["source_ids"].list.first().to_list()
    assert "image:m3a" not in images  # MIMIC train, but Chest ImaGenome test (anatomical evaluation)
    assert "image:g5" not in images  # Chest ImaGenome train, but MIMIC test (report evaluation)
    assert "image:cp5" not in images  # CheXpert-Plus train, but CheXpert test (classification evaluation)
    assert set(rows["split"].unique().to_list()) == {"train"}


def test_evaluation_sets_come_from_test_splits(roots):
    evaluation = pl.read_parquet(StorageLayout(roots.storage_root).corpus.eval_sets / "*.parquet")
    assert set(evaluation["split"].unique().to_list()) == {"test"}
    assert evaluation.schema == CORPUS_SCHEMA
    report = evaluation.filter(pl.col("task") == "report_generation")
    assert sorted(c[1]["value"] for c in report["conversation"].to_list()) == [
        "Clean report of 50000005.",
        "Clean report of 50000006.",
    ]


def test_every_row_opens_with_the_image_and_alternates(rows):
    assert rows.schema == CORPUS_SCHEMA
    for conversation in rows["conversation"].to_list():
        assert conversation[0]["value"].startswith("<image>\n")
        assert sum("<image>" in turn["value"] for turn in conversation) == 1
        assert [t["from"] for t in conversation] == ["human", "gpt"] * (len(conversation) // 2)
    assert (rows["turns"] == rows["conversation"].list.len() // 2).all()


def test_targets_are_filled_for_classification_grounding_and_detection(rows):
    for task, has_boxes, has_labels in [
        ("classification", False, True),
        ("anatomical_grounding", True, True),
        ("abnormality_grounding", True, True),
        ("abnormality_detection", True, True),
        ("phrase_grounding", True, True),
        ("report_generation", False, False),
        ("conversation", False, False),
    ]:
        subset = rows.filter(pl.col("task") == task)
        assert subset.height and subset["target_boxes"].is_not_null().all() == has_boxes, task
        assert subset["target_labels"].is_not_null().all() == has_labels, task


def test_classification_lists_positive_labels_and_names_none_for_normals(roots):
    by_image = {
        r["id"].split(":")[1]: r
        for r in partition_rows(roots, "classification__mimic_cxr").iter_rows(named=True)
    }
    assert by_image["m1a"]["target_labels"] == ["Cardiomegaly", "Pleural Effusion"]
    assert "cardiomegaly and pleural effusion" in by_image["m1a"]["conversation"][1]["value"]
    assert by_image["m2a"]["target_labels"] == ["No Finding"]
    assert by_image["m2a"]["template_id"].split(":")[2] == "none"


def test_detection_answers_every_finding_or_none(roots):
    detection = {
        r["id"]: r for r in partition_rows(roots, "abnormality_detection__vindr_cxr").iter_rows(named=True)
    }
    v1 = detection["abnormality_detection__vindr_cxr:v1:0"]
    answer = v1["conversation"][1]["value"]
    assert "cardiomegaly at [0.30, 0.50, 0.75, 0.85]" in answer
    assert "pleural effusion at [0.05, 0.70, 0.30, 0.95] and [0.70, 0.72, 0.95, 0.96]" in answer
    assert v1["target_labels"] == ["Cardiomegaly", "Pleural effusion", "Pleural effusion"]
    negative = detection["abnormality_detection__vindr_cxr:v2:0"]
    assert negative["target_boxes"] == [] and parse_boxes(negative["conversation"][1]["value"]) == []


def test_grounding_answers_round_to_two_decimals(roots):
    nodule = partition_rows(roots, "abnormality_grounding__vindr_cxr").filter(
        pl.col("id").str.contains("Nodule")
    )
    assert nodule.height == 3
    for answer in nodule["conversation"].list.last().struct.field("value").to_list():
        assert "[0.20, 0.30, 0.26, 0.35]" in answer


def test_conversations_keep_their_rounds_and_lineage(roots):
    conversations = partition_rows(roots, "conversation__mimic_cxr")
    assert conversations["turns"].to_list() == [2, 3]
    assert conversations["llm_cache_keys"].to_list() == [["conv-m1a"], ["conv-m1b"]]
    assert conversations["template_id"].is_null().all()
    # the facts each was written from travel with it, for the conversation judge
    assert conversations["reference"].struct.field("report").to_list() == ["Report of m1a.", "Report of m1b."]


def test_only_llm_conversations_carry_reference_data(rows):
    llm_tasks = pl.col("task").is_in(["conversation", "grounded_conversation"])
    assert rows.filter(~llm_tasks)["reference"].is_null().all()
    assert rows.filter(llm_tasks)["reference"].is_not_null().all()


def test_shards_are_bounded(roots):
    manifest = partition_manifests(StorageLayout(roots.storage_root).corpus)[
        "abnormality_grounding__vindr_cxr"
    ]
    assert [f["rows"] for f in manifest["files"]] == [2, 2, 2, 2, 1]
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])


def test_rebuild_is_byte_identical_and_touches_only_its_partition(roots):
    root = StorageLayout(roots.storage_root).corpus
    before = partition_manifests(root)
    others = {p: p.stat().st_mtime_ns for p in shard_paths(root) if "phrase_grounding__ms_cxr" not in str(p)}
    build_partition(roots.storage_root, "phrase_grounding__ms_cxr", CorpusConfig(rows_per_shard=2))
    after = partition_manifests(root)
    assert after == before
    assert {p: p.stat().st_mtime_ns for p in others} == others


def test_same_inputs_elsewhere_give_the_same_bytes(roots, tmp_path):
    other = build_fixture_corpus(tmp_path)
    ours, theirs = (
        partition_manifests(StorageLayout(roots.storage_root).corpus),
        partition_manifests(StorageLayout(other.storage_root).corpus),
    )
    assert {k: [f["sha256"] for f in m["files"]] for k, m in ours.items()} == {
        k: [f["sha256"] for f in m["files"]] for k, m in theirs.items()
    }


def test_another_seed_changes_phrasings_not_rows(roots, tmp_path):
    seeded = CorpusConfig(seed=7, rows_per_shard=2)
    other = write_corpus_inputs(tmp_path / "data", tmp_path / "storage")
    build_eval_sets(other.storage_root, seeded)
    result = build_partition(other.storage_root, "abnormality_grounding__vindr_cxr", seeded)
    ours = partition_rows(roots, "abnormality_grounding__vindr_cxr")
    assert result.rows["id"].to_list() == ours["id"].to_list()
    assert result.rows["template_id"].to_list() != ours["template_id"].to_list()
    assert result.manifest["config_fingerprint"] != CorpusConfig(rows_per_shard=2).fingerprint()


def test_overrides_change_repetition_and_cap(tmp_path):
    config = CorpusConfig().with_overrides(
        repeat={"phrase_grounding__ms_cxr": 1}, cap={"anatomical_grounding__chest_imagenome": 1}
    )
    assert config.row("phrase_grounding__ms_cxr").repeat == 1
    assert config.row("anatomical_grounding__chest_imagenome").cap == 1
    with pytest.raises(KeyError, match="unknown Table 1 rows"):
        CorpusConfig().with_overrides(repeat={"nonsense__row": 2})
    roots = write_corpus_inputs(tmp_path / "data", tmp_path / "storage")
    build_eval_sets(roots.storage_root, config)
    assert (
        build_partition(roots.storage_root, "anatomical_grounding__chest_imagenome", config).manifest["rows"]
        == 1
    )


PAPER_TRAIN_AND_VALIDATE_ROWS = {
    "phrase_grounding__ms_cxr",
    "phrase_grounding__padchest_gr",
    "grounded_conversation__padchest_gr",
}


def test_rows_train_on_train_and_validate_where_the_papers_code_does():
    splits = {row.key: row.splits for row in TABLE_1}
    assert {key for key, s in splits.items() if s == ("train", "validate")} == PAPER_TRAIN_AND_VALIDATE_ROWS
    assert {s for key, s in splits.items() if key not in PAPER_TRAIN_AND_VALIDATE_ROWS} == {("train",)}
    narrowed = CorpusConfig().with_overrides(splits={"phrase_grounding__ms_cxr": ["train"]})
    assert narrowed.row("phrase_grounding__ms_cxr").splits == ("train",)
    assert narrowed.fingerprint() != CorpusConfig().fingerprint()
    for leaking in (["train", "test"], []):
        with pytest.raises(ValueError, match="test split is held out"):
            CorpusConfig().with_overrides(splits={"phrase_grounding__ms_cxr": leaking})


def _move_training_images_to_validate(storage_root, sources):
    """The fixture's MS-CXR and PadChest-GR training images (and their conversations) become validate."""
    layout = StorageLayout(storage_root)
    to_validate = pl.when(pl.col("split") == "train").then(pl.lit("validate")).otherwise("split")
    for source in sources:
        path = layout.source_table(source, "images")
        pl.read_parquet(path).with_columns(split=to_validate).write_parquet(path)
    path = layout.llm_output(CONVERSATIONS)
    conversations = pl.read_parquet(path)
    moved = pl.col("source").is_in(list(sources))
    conversations.with_columns(split=pl.when(moved).then(to_validate).otherwise("split")).write_parquet(path)


def test_validate_images_are_trained_on_by_the_paper_rows_and_test_images_never(tmp_path):
    roots = write_corpus_inputs(tmp_path / "data", tmp_path / "storage")
    _move_training_images_to_validate(roots.storage_root, ("ms_cxr", "padchest_gr"))
    build_eval_sets(roots.storage_root)
    built = {key: build_partition(roots.storage_root, key) for key in PAPER_TRAIN_AND_VALIDATE_ROWS}
    for key, result in built.items():
        assert result.manifest["rows"] == EXPECTED_TRAINING_ROWS[key], key
        assert result.manifest["splits"] == ["train", "validate"]
        assert result.manifest["rows_by_split"] == {"validate": EXPECTED_TRAINING_ROWS[key]}
    images = set(pl.concat([r.rows for r in built.values()])["source_ids"].list.first())
    assert images == {"image:ms1", "image:pg1.png"}  # ms6 and pg2.png are test images

    train_only = CorpusConfig().with_overrides(splits=dict.fromkeys(PAPER_TRAIN_AND_VALIDATE_ROWS, ["train"]))
    for key in PAPER_TRAIN_AND_VALIDATE_ROWS:
        assert build_partition(roots.storage_root, key, train_only).manifest["rows"] == 0


def test_a_partition_needs_the_evaluation_sets_first(tmp_path):
    roots = write_corpus_inputs(tmp_path / "data", tmp_path / "storage")
    with pytest.raises(CorpusInputMissing, match="corpus_eval_sets"):
        build_partition(roots.storage_root, "classification__chexpert")


def test_a_missing_llm_output_names_its_asset(tmp_path):
    roots = write_corpus_inputs(tmp_path / "data", tmp_path / "storage")
    StorageLayout(roots.storage_root).llm_output(CLEAN_REPORTS).unlink()
    with pytest.raises(CorpusInputMissing, match="reports_without_priors"):
        build_eval_sets(roots.storage_root)


def test_shards_load_with_hugging_face_datasets(roots, tmp_path):
    import datasets

    files = [str(p) for p in shard_paths(StorageLayout(roots.storage_root).corpus)]
    loaded = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert loaded.num_rows == sum(EXPECTED_TRAINING_ROWS.values())
    first = loaded[0]
    assert first["conversation"][0]["from"] == "human" and first["conversation"][0]["value"].startswith(
        "<image>\n"
    )
