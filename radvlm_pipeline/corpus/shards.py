"""Parquet shards, evaluation files and manifests under the corpus folder (``CorpusLayout``).

A partition folder and the evaluation folder each hold their files plus a manifest of them; the corpus
manifest collects both, with hashes, so a reader trusts the manifests instead of listing folders.

Files are written to a temporary sibling and swapped in, so a crash never leaves half a partition. The
same rows and settings give byte-identical files (no timestamps anywhere; rows sorted by id).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from radvlm_pipeline.layout import MANIFEST, CorpusLayout, eval_set_name, shard_name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_parquet(frame: pl.DataFrame, path: Path, zstd_level: int) -> dict[str, Any]:
    frame.write_parquet(path, compression="zstd", compression_level=zstd_level, statistics=True)
    return {
        "file": path.name,
        "rows": frame.height,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def write_json(payload: dict, path: Path) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def write_partition(
    rows: pl.DataFrame, out_dir: Path, rows_per_shard: int, zstd_level: int, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Replace the partition folder with shards of at most ``rows_per_shard`` rows and its manifest.
    An empty partition still gets one (empty) shard, so the schema is always there to query."""
    if rows_per_shard < 1:
        raise ValueError("rows_per_shard must be >= 1")
    staging = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    files = [
        _write_parquet(rows.slice(start, rows_per_shard), staging / shard_name(index), zstd_level)
        for index, start in enumerate(range(0, max(rows.height, 1), rows_per_shard))
    ]
    manifest = {**manifest, "rows": rows.height, "files": files}
    write_json(manifest, staging / MANIFEST)
    _swap_in(staging, out_dir)
    return manifest


def _swap_in(staging: Path, target: Path) -> None:
    retired = target.with_name(target.name + ".old")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        os.replace(target, retired)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)


def write_eval_sets(
    sets: dict[str, pl.DataFrame], out_dir: Path, zstd_level: int, records: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Replace the evaluation folder with one file per task and its manifest."""
    staging = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    manifest = {
        task: {**records[task], **_write_parquet(frame, staging / eval_set_name(task), zstd_level)}
        for task, frame in sorted(sets.items())
    }
    write_json(manifest, staging / MANIFEST)
    _swap_in(staging, out_dir)
    return manifest


def partition_manifests(corpus: CorpusLayout) -> dict[str, dict[str, Any]]:
    shards = corpus.shards
    if not shards.is_dir():
        return {}
    return {
        path.parent.name: read_json(path)
        for path in sorted(shards.glob(f"*/{MANIFEST}"))
        if not path.parent.name.endswith((".tmp", ".old"))
    }


def eval_manifest(corpus: CorpusLayout) -> dict[str, dict[str, Any]]:
    path = corpus.eval_sets_manifest
    return read_json(path) if path.is_file() else {}


def write_corpus_manifest(corpus: CorpusLayout) -> dict[str, Any]:
    """Every partition and evaluation set with row counts and file hashes, in one file."""
    partitions = partition_manifests(corpus)
    evaluation = eval_manifest(corpus)
    manifest = {
        "training_rows": sum(p["rows"] for p in partitions.values()),
        "evaluation_rows": sum(e["rows"] for e in evaluation.values()),
        "partitions": partitions,
        "eval_sets": evaluation,
    }
    write_json(manifest, corpus.manifest)
    return manifest


def shard_paths(corpus: CorpusLayout) -> list[Path]:
    return [
        corpus.partition(key) / f["file"]
        for key, p in partition_manifests(corpus).items()
        for f in p["files"]
    ]


def eval_paths(corpus: CorpusLayout) -> list[Path]:
    return [corpus.eval_sets / record["file"] for record in eval_manifest(corpus).values()]
