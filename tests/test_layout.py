"""The storage layout: a moved file would strand every output already on disk, so the paths are pinned."""

from __future__ import annotations

from pathlib import Path

from radvlm_pipeline.layout import (
    CLEAN_REPORTS,
    CONVERSATIONS,
    RunLayout,
    StorageLayout,
    eval_set_name,
    image_root,
    llava_name,
    shard_name,
)

ROOT = Path("/storage")


def test_every_path_under_the_storage_root_is_where_it_has_always_been():
    layout = StorageLayout(ROOT)
    corpus = layout.corpus
    run = layout.training_run("all")
    paths = {
        layout.source_table("mimic_cxr", "images"): "sources/mimic_cxr/images.parquet",
        layout.source_facts("mimic_cxr"): "sources/mimic_cxr/facts.json",
        layout.source_boxes_example("vindr_cxr"): "sources/vindr_cxr/boxes_example.png",
        layout.derived_images("vindr_cxr_png"): "derived/vindr-cxr-png",
        layout.llm_cache: "llm/cache.sqlite",
        layout.llm_output(CLEAN_REPORTS): "llm/reports_without_priors.parquet",
        layout.llm_quarantine(CONVERSATIONS): "llm/conversations_quarantine.parquet",
        corpus.manifest: "corpus/manifest.json",
        corpus.catalog: "corpus/corpus.duckdb",
        corpus.partition("phrase_grounding__ms_cxr") / shard_name(0): (
            "corpus/shards/phrase_grounding__ms_cxr/part-00000.parquet"
        ),
        corpus.eval_set("classification"): "corpus/eval/classification.parquet",
        corpus.eval_sets_manifest: "corpus/eval/manifest.json",
        corpus.llava / llava_name("conversation__mimic_cxr"): "corpus/llava/conversation__mimic_cxr.json",
        corpus.llava_mixture: "corpus/llava/train.yaml",
        layout.base_model_record: "models/base/current.json",
        layout.tiny_model_dir: "models/base/tiny-llava-onevision",
        run.config: "models/all/train_config.yaml",
        run.metrics: "models/all/metrics.jsonl",
        run.checkpoints: "models/all/checkpoints",
        run.final: "models/all/final",
        run.job("abc"): "models/all/jobs/abc",
        layout.baseline_dir("chexagent"): "models/baselines/chexagent",
        layout.answers("all", "classification"): "evaluation/answers/all/classification.parquet",
        layout.generation_record("all"): "evaluation/answers/all/generation.json",
        layout.metrics("classification", "all"): "evaluation/metrics/classification/all.json",
        layout.metric_samples("classification", "all"): "evaluation/metrics/classification/all.parquet",
        layout.results_tables: "evaluation/results/tables.md",
        layout.per_label_f1_figure: "evaluation/results/figure4_per_label_f1.png",
        layout.grounding_figure("phrase_grounding"): "evaluation/results/figure5_phrase_grounding.png",
    }
    assert [path.relative_to(ROOT).as_posix() for path in paths] == list(paths.values())
    assert eval_set_name("report_generation") == "report_generation.parquet"
    assert RunLayout(Path("/run")).final == Path("/run/final")


def test_image_roots_are_dataset_folders_or_converted_images():
    assert image_root("mimic_cxr", Path("/data"), ROOT) == Path("/data/mimic-cxr")
    assert image_root("vindr_cxr_png", Path("/data"), ROOT) == ROOT / "derived" / "vindr-cxr-png"
