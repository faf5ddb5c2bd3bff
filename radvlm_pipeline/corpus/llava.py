"""Export to the JSON that LLaVA-NeXT (LLaVA-OneVision) training reads.

One ``llava/<task>__<source>.json`` per Table 1 row (a list of ``{"id", "image", "conversations"}``,
image as an absolute path under the configured roots) and ``llava/train.yaml``, the data mixture file
LLaVA-NeXT's ``--data_path`` accepts (``datasets: [{json_path, sampling_strategy}]``).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import yaml

from radvlm_pipeline.corpus.shards import partition_manifests
from radvlm_pipeline.layout import LLAVA_MIXTURE, CorpusLayout, image_root, llava_name


def image_roots(
    datasets: list[str], data_root: Path, storage_root: Path, overrides: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """Where each image root lies on the training machine: the pipeline's own roots unless overridden
    (e.g. images copied to a cluster's scratch disk)."""
    overrides = overrides or {}
    return {
        name: Path(overrides[name]) if name in overrides else image_root(name, data_root, storage_root)
        for name in datasets
    }


def export_llava(root: CorpusLayout, roots: Mapping[str, Path]) -> dict[str, int]:
    """Write the JSON files and mixture file; returns rows per file. Rows whose image root is not in
    ``roots`` raise: a training file with unresolvable images is worse than none."""
    out_dir = root.llava
    staging = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    root_text = {name: str(Path(path).resolve()) for name, path in roots.items()}
    written: dict[str, int] = {}
    for key, manifest in partition_manifests(root).items():
        rows = pl.read_parquet([root.partition(key) / f["file"] for f in manifest["files"]])
        unknown = set(rows["image_dataset"].unique().to_list()) - set(root_text)
        if unknown:
            raise KeyError(f"{key}: no image root configured for {sorted(unknown)}")
        export = rows.select(
            "id",
            image=pl.concat_str(
                [
                    pl.col("image_dataset").replace_strict(root_text, return_dtype=pl.String),
                    pl.col("image_path"),
                ],
                separator="/",
            ),
            conversations=pl.col("conversation"),
        )
        export.write_json(staging / llava_name(key))
        written[llava_name(key)] = export.height
    mixture = {
        "datasets": [
            {"json_path": str((out_dir / name).resolve()), "sampling_strategy": "all"}
            for name in sorted(written)
        ]
    }
    (staging / LLAVA_MIXTURE).write_text(yaml.safe_dump(mixture, sort_keys=False))
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return written
