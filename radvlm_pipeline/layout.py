"""Where every file lives: the data root the datasets are read from, the storage root stages write to.

Stages hand each other files, not objects, so these paths are the contract between them: one stage
writes where this module says and the next reads from there, neither building the path itself. (Inside
a dataset folder the release's own layout holds, which only its reader knows.) Both roots come from
environment variables, so the same code runs on the bundled sample, on a workstation with the real
datasets and on a cluster.

The data root holds the seven datasets side by side, each in its released layout (the folder names are
``Dataset.folder`` in ``datasets.py``)::

    <data_root>/mimic-cxr/  chexpert/  chexpert-plus/  chest-imagenome/  vindr-cxr/  ms-cxr/  padchest-gr/

The storage root holds every output::

    <storage_root>/
      sources/<source>/               images, reports, labels, boxes, quarantine, accounting (.parquet),
                                      facts.json, boxes_example.png
      derived/vindr-cxr-png/          images the pipeline converted (VinDr-CXR DICOM -> 8-bit PNG)
      image_checks/<dataset>.parquet  the image checks' verdicts per file (size, mtime, level, outcome)
      llm/
        cache.sqlite                  every LLM answer, keyed by content
        <stage>.parquet               reports_without_priors, conversations
        <stage>_quarantine.parquet
      corpus/
        manifest.json  corpus.duckdb
        shards/<task>__<source>/      part-00000.parquet ..., manifest.json (one folder per Table 1 row)
        eval/                         <task>.parquet ..., manifest.json (the held-out sets)
        llava/                        <task>__<source>.json ..., train.yaml (the LLaVA-NeXT export)
      models/
        base/                         current.json, tiny-llava-onevision/
        <recipe>/                     one training run: train_config.yaml, metrics.jsonl, checkpoints/,
                                      final/, jobs/<run_id>/ (see RunLayout)
        baselines/<name>/
      evaluation/
        answers/<model>/              <task>.parquet ..., generation.json
        metrics/<task>/               <model>.json, <model>.parquet (per-sample scores)
        results/                      tables.md, figure4_per_label_f1.png, figure5_<task>.png

Folders written whole (a corpus partition, the evaluation sets, the LLaVA export) are built in a sibling
folder and swapped in, so the names of the files inside them are given as names (``shard_name``, ...),
which the writers apply to that sibling and the readers to the real folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from radvlm_pipeline.datasets import DATASETS

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DATA_ROOT_ENV = "RADVLM_DATA_ROOT"
STORAGE_ROOT_ENV = "RADVLM_STORAGE_ROOT"

BUNDLED_SAMPLE_ROOT = PROJECT_ROOT / "data" / "sample"
DEFAULT_STORAGE_ROOT = PROJECT_ROOT / "storage"


def data_root() -> Path:
    return Path(os.environ.get(DATA_ROOT_ENV) or BUNDLED_SAMPLE_ROOT)


def storage_root() -> Path:
    return Path(os.environ.get(STORAGE_ROOT_ENV) or DEFAULT_STORAGE_ROOT)


# Image roots that are not a dataset folder: images the pipeline converted itself (VinDr-CXR DICOM ->
# 8-bit PNG) live under the storage root. An images table names the root of each path in `dataset`.
DERIVED_IMAGE_ROOTS = {"vindr_cxr_png": Path("derived") / "vindr-cxr-png"}


def image_root(dataset: str, data_root: Path, storage_root: Path) -> Path:
    """The folder an images-table `path` is relative to."""
    if dataset in DATASETS:
        return DATASETS[dataset].root(data_root)
    if dataset in DERIVED_IMAGE_ROOTS:
        return StorageLayout(storage_root).derived_images(dataset)
    raise KeyError(f"unknown image root {dataset!r}")


# The LLM stages, named alike as assets and as files under llm/.
CLEAN_REPORTS = "reports_without_priors"
CONVERSATIONS = "conversations"

MANIFEST = "manifest.json"  # in corpus/, in every partition folder and in corpus/eval/
SHARD_GLOB = "part-*.parquet"
LLAVA_MIXTURE = "train.yaml"


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def eval_set_name(task: str) -> str:
    return f"{task}.parquet"


def llava_name(partition: str) -> str:
    return f"{partition}.json"


@dataclass(frozen=True)
class CorpusLayout:
    """``<storage_root>/corpus/``: the training shards, the evaluation sets and what describes them."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def catalog(self) -> Path:
        return self.root / "corpus.duckdb"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    def partition(self, key: str) -> Path:
        """A Table 1 row's folder; ``key`` is ``<task>__<source>``."""
        return self.shards / key

    @property
    def eval_sets(self) -> Path:
        return self.root / "eval"

    def eval_set(self, task: str) -> Path:
        return self.eval_sets / eval_set_name(task)

    @property
    def eval_sets_manifest(self) -> Path:
        return self.eval_sets / MANIFEST

    @property
    def llava(self) -> Path:
        return self.root / "llava"

    @property
    def llava_mixture(self) -> Path:
        return self.llava / LLAVA_MIXTURE


@dataclass(frozen=True)
class RunLayout:
    """One training run's folder: ``models/<recipe>/`` for the assets, any folder for a hand-made run."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "train_config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        """The trained model, a from_pretrained folder: what evaluation loads."""
        return self.root / "final"

    def job(self, run_id: str) -> Path:
        """Where a launcher keeps one Dagster run's batch script, log and Pipes files."""
        return self.root / "jobs" / run_id


@dataclass(frozen=True)
class StorageLayout:
    """Every path under one storage root."""

    root: Path

    def source_dir(self, source: str) -> Path:
        return self.root / "sources" / source

    def source_table(self, source: str, table: str) -> Path:
        return self.source_dir(source) / f"{table}.parquet"

    def source_facts(self, source: str) -> Path:
        return self.source_dir(source) / "facts.json"

    def source_boxes_example(self, source: str) -> Path:
        return self.source_dir(source) / "boxes_example.png"

    def image_verdicts(self, dataset: str) -> Path:
        """The image checks' verdicts on the images of an image root (``image_root``'s ``dataset``; the
        sources annotating MIMIC-CXR images share ``mimic_cxr``'s), reused while a file is unchanged."""
        return self.root / "image_checks" / f"{dataset}.parquet"

    def derived_images(self, name: str) -> Path:
        """The root of images the pipeline converted; ``name`` is a key of ``DERIVED_IMAGE_ROOTS``."""
        return self.root / DERIVED_IMAGE_ROOTS[name]

    @property
    def llm_dir(self) -> Path:
        return self.root / "llm"

    @property
    def llm_cache(self) -> Path:
        return self.llm_dir / "cache.sqlite"

    def llm_output(self, stage: str) -> Path:
        return self.llm_dir / f"{stage}.parquet"

    def llm_quarantine(self, stage: str) -> Path:
        return self.llm_dir / f"{stage}_quarantine.parquet"

    @property
    def corpus(self) -> CorpusLayout:
        return CorpusLayout(self.root / "corpus")

    @property
    def base_model_dir(self) -> Path:
        return self.root / "models" / "base"

    @property
    def base_model_record(self) -> Path:
        """Which model fine-tuning starts from, written by the base_model asset."""
        return self.base_model_dir / "current.json"

    @property
    def tiny_model_dir(self) -> Path:
        return self.base_model_dir / "tiny-llava-onevision"

    def model_dir(self, recipe: str) -> Path:
        return self.root / "models" / recipe

    def training_run(self, recipe: str) -> RunLayout:
        return RunLayout(self.model_dir(recipe))

    def baseline_dir(self, name: str) -> Path:
        return self.root / "models" / "baselines" / name

    def answers_dir(self, model: str) -> Path:
        return self.root / "evaluation" / "answers" / model

    def answers(self, model: str, task: str) -> Path:
        return self.answers_dir(model) / f"{task}.parquet"

    def generation_record(self, model: str) -> Path:
        return self.answers_dir(model) / "generation.json"

    def metrics(self, task: str, model: str) -> Path:
        return self.root / "evaluation" / "metrics" / task / f"{model}.json"

    def metric_samples(self, task: str, model: str) -> Path:
        """The per-sample scores beside ``metrics``."""
        return self.root / "evaluation" / "metrics" / task / f"{model}.parquet"

    @property
    def results_dir(self) -> Path:
        return self.root / "evaluation" / "results"

    @property
    def results_tables(self) -> Path:
        return self.results_dir / "tables.md"

    @property
    def per_label_f1_figure(self) -> Path:
        return self.results_dir / "figure4_per_label_f1.png"

    def grounding_figure(self, task: str) -> Path:
        return self.results_dir / f"figure5_{task}.png"
