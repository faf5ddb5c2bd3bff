"""``corpus/corpus.duckdb``: views over the shards and evaluation files, for SQL on the corpus.

The database holds no copy of the data, only views (and the manifest as a small table), so it stays
a few kilobytes and always shows the files currently on disk. Paths in the views are absolute: open the
catalog from anywhere, e.g. ``duckdb storage/corpus/corpus.duckdb "SELECT * FROM table1"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from radvlm_pipeline.corpus.shards import eval_manifest, partition_manifests
from radvlm_pipeline.layout import CorpusLayout


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _files(paths: list[Path]) -> str:
    return "[" + ", ".join(_quote(str(p.resolve())) for p in paths) + "]"


def write_catalog(root: CorpusLayout) -> Path:
    """(Re)create the catalog: ``corpus`` (all training rows), ``evaluation`` (all held-out rows), one
    ``eval_<task>`` view per evaluation set, ``table1`` (rows per task and source) and ``manifest``."""
    partitions, evaluation = partition_manifests(root), eval_manifest(root)
    target = root.catalog
    staging = target.with_name(target.name + ".tmp")
    staging.unlink(missing_ok=True)
    with duckdb.connect(str(staging)) as con:
        con.execute(
            "CREATE TABLE manifest (kind VARCHAR, name VARCHAR, file VARCHAR, rows BIGINT, bytes BIGINT, sha256 VARCHAR)"
        )
        records = [
            ("training", key, f["file"], f["rows"], f["bytes"], f["sha256"])
            for key, p in partitions.items()
            for f in p["files"]
        ]
        records += [
            ("evaluation", task, e["file"], e["rows"], e["bytes"], e["sha256"])
            for task, e in evaluation.items()
        ]
        if records:
            con.executemany("INSERT INTO manifest VALUES (?, ?, ?, ?, ?, ?)", records)
        shard_files = [root.partition(key) / f["file"] for key, p in partitions.items() for f in p["files"]]
        if shard_files:
            con.execute(f"CREATE VIEW corpus AS SELECT * FROM read_parquet({_files(shard_files)})")
            con.execute(
                "CREATE VIEW table1 AS SELECT task, source, count(*) AS rows, "
                "count(DISTINCT regexp_replace(id, ':[0-9]+$', '')) AS samples, "
                "round(count(*) / count(DISTINCT regexp_replace(id, ':[0-9]+$', '')), 2) AS repetition "
                "FROM corpus GROUP BY task, source ORDER BY task, source"
            )
        eval_files = {task: root.eval_sets / e["file"] for task, e in evaluation.items()}
        for task, path in eval_files.items():
            con.execute(
                f"CREATE VIEW eval_{task} AS SELECT * FROM read_parquet({_quote(str(path.resolve()))})"
            )
        if eval_files:
            con.execute(
                f"CREATE VIEW evaluation AS SELECT * FROM read_parquet({_files(list(eval_files.values()))})"
            )
    os.replace(staging, target)
    return target
