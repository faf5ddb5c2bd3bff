"""Training recipes: which corpus tasks each fine-tuning run sees (the paper's Table 6).

``all`` is RadVLM itself; the others are the single-task ablations. Abnormality detection trains with
abnormality grounding (both are VinDr-CXR box tasks evaluated by the abnormality-grounding mAP), and
the grounded conversations with the standard ones (the conversation column of Table 6 scores both).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from radvlm_pipeline.layout import SHARD_GLOB, StorageLayout
from radvlm_pipeline.schema import TASKS
from radvlm_pipeline.training.config import TrainConfig

RECIPES: dict[str, tuple[str, ...]] = {
    "all": TASKS,
    "report_generation": ("report_generation",),
    "classification": ("classification",),
    "anatomical_grounding": ("anatomical_grounding",),
    "abnormality_grounding": ("abnormality_grounding", "abnormality_detection"),
    "phrase_grounding": ("phrase_grounding",),
    "conversation": ("conversation", "grounded_conversation"),
}


def shard_task(shard_dir_name: str) -> str:
    """Shard folders are named ``<task>__<source>``."""
    return shard_dir_name.split("__", 1)[0]


def recipe_shard_files(storage_root: Path, recipe: str) -> list[Path]:
    """The Parquet files of every shard folder whose task the recipe trains on, in a fixed order."""
    tasks = set(RECIPES[recipe])
    root = StorageLayout(storage_root).corpus.shards
    folders = sorted(p for p in root.glob("*__*") if p.is_dir() and shard_task(p.name) in tasks)
    return [file for folder in folders for file in sorted(folder.glob(SHARD_GLOB))]


def rows_per_task(files: list[Path]) -> dict[str, int]:
    """Training rows per task in these shards (read from the task column, not trusted from names)."""
    if not files:
        return {}
    counts = (
        pl.scan_parquet(files)
        .filter(pl.col("split") == "train")
        .group_by("task")
        .len()
        .sort("task")
        .collect()
    )
    return dict(zip(counts["task"].to_list(), counts["len"].to_list()))


def recipe_train_config(
    recipe: str, storage_root: Path, data_root: Path, model_path: str, **settings
) -> TrainConfig:
    """The training config of one recipe's run; ``settings`` override TrainConfig's paper defaults."""
    layout = StorageLayout(storage_root)
    files = recipe_shard_files(storage_root, recipe)
    if not files:
        raise FileNotFoundError(
            f"no corpus shards for recipe {recipe!r} (tasks {RECIPES[recipe]}) under {layout.corpus.shards}"
        )
    return TrainConfig(
        model_path=model_path,
        output_dir=str(layout.model_dir(recipe)),
        shard_files=[str(f) for f in files],
        data_root=str(data_root),
        storage_root=str(storage_root),
        recipe=recipe,
        **settings,
    )


def shards_fingerprint(files: list[Path]) -> str:
    """Changes whenever a shard's bytes do (the corpus writes byte-identical shards for equal input)."""
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(str(file).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
