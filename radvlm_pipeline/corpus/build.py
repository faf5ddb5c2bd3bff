"""Building one Table 1 row (a corpus partition) and the evaluation sets: what the assets call.

Order matters once: the evaluation sets are built first, and every training partition leaves out the
patients they hold (within a patient namespace: MIMIC-CXR, Chest ImaGenome and MS-CXR share patients, so
do CheXpert and CheXpert-Plus). A patient evaluated on is never trained on, whichever dataset brought them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from radvlm_pipeline.corpus.builders import BUILDERS, TASK_TEMPLATES
from radvlm_pipeline.corpus.engine import Assembled, assemble
from radvlm_pipeline.corpus.inputs import CorpusInputMissing, CorpusInputs
from radvlm_pipeline.corpus.shards import (
    eval_paths,
    write_eval_sets,
    write_partition,
)
from radvlm_pipeline.corpus.table import PATIENT_NAMESPACE, CorpusConfig, TableRow
from radvlm_pipeline.corpus.templates import templates_fingerprint
from radvlm_pipeline.layout import StorageLayout

SUBJECT_PREFIX = "subject:"


@dataclass
class PartitionResult:
    rows: pl.DataFrame
    manifest: dict[str, Any]


def subjects_of(rows: pl.LazyFrame) -> pl.LazyFrame:
    """(id, namespace, subject_id) of every corpus row, from its lineage."""
    return (
        rows.select("id", "source", "source_ids")
        .explode("source_ids")
        .filter(pl.col("source_ids").str.starts_with(SUBJECT_PREFIX))
        .select(
            "id",
            namespace=pl.col("source").replace_strict(PATIENT_NAMESPACE, return_dtype=pl.String),
            subject_id=pl.col("source_ids").str.strip_prefix(SUBJECT_PREFIX),
        )
    )


def held_out_subjects(storage_root: Path, source: str) -> pl.DataFrame:
    """The patients of ``source``'s namespace that some evaluation set holds."""
    corpus = StorageLayout(storage_root).corpus
    paths = eval_paths(corpus)
    if not paths:
        raise CorpusInputMissing(
            f"no evaluation sets under {corpus.eval_sets}: materialize corpus_eval_sets first, "
            "so training rows can leave out the patients they hold."
        )
    return (
        subjects_of(pl.scan_parquet(paths))
        .filter(pl.col("namespace") == PATIENT_NAMESPACE[source])
        .select("subject_id")
        .unique()
        .sort("subject_id")
        .collect()
    )


def _assemble(
    inputs: CorpusInputs,
    task: str,
    source: str,
    purpose: str,
    splits: tuple[str, ...],
    config: CorpusConfig,
    repeat: int,
    cap: int | None,
    held_out: pl.DataFrame | None,
) -> Assembled:
    samples = BUILDERS[task](inputs, source, splits)
    return assemble(
        samples,
        task=task,
        source=source,
        purpose=purpose,
        templates=TASK_TEMPLATES[task],
        seed=config.seed,
        repeat=repeat,
        cap=cap,
        held_out_subjects=held_out,
    )


def build_partition(storage_root: Path, key: str, config: CorpusConfig | None = None) -> PartitionResult:
    """Rebuild one Table 1 row's shards; no other partition is read or touched."""
    config = config or CorpusConfig()
    row: TableRow = config.row(key)
    inputs = CorpusInputs(storage_root)
    held_out = held_out_subjects(storage_root, row.source)
    assembled = _assemble(
        inputs, row.task, row.source, row.key, row.splits, config, row.repeat, row.cap, held_out
    )
    manifest = {
        "partition": row.key,
        "task": row.task,
        "source": row.source,
        "repeat": row.repeat,
        "cap": row.cap,
        "splits": list(row.splits),
        "rows_by_split": dict(sorted(Counter(assembled.rows["split"].to_list()).items())),
        "samples": assembled.stats["samples_kept"],
        "stats": assembled.stats,
        "config_fingerprint": config.fingerprint(),
        "templates_fingerprint": templates_fingerprint()[:16],
    }
    out_dir = StorageLayout(storage_root).corpus.partition(row.key)
    manifest = write_partition(assembled.rows, out_dir, config.rows_per_shard, config.zstd_level, manifest)
    return PartitionResult(rows=assembled.rows, manifest=manifest)


def build_eval_sets(storage_root: Path, config: CorpusConfig | None = None) -> dict[str, PartitionResult]:
    """The held-out sets, from test splits only, one file per task (same engine, one repetition)."""
    config = config or CorpusConfig()
    inputs = CorpusInputs(storage_root)
    built: dict[str, Assembled] = {}
    records: dict[str, dict[str, Any]] = {}
    for spec in config.eval_sets:
        built[spec.task] = _assemble(
            inputs, spec.task, spec.source, spec.key, ("test",), config, 1, spec.cap, None
        )
        records[spec.task] = {
            "task": spec.task,
            "source": spec.source,
            "cap": spec.cap,
            "stats": built[spec.task].stats,
            "config_fingerprint": config.fingerprint(),
        }
    manifest = write_eval_sets(
        {task: a.rows for task, a in built.items()},
        StorageLayout(storage_root).corpus.eval_sets,
        config.zstd_level,
        records,
    )
    return {task: PartitionResult(rows=built[task].rows, manifest=manifest[task]) for task in built}
