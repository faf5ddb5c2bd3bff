"""Corpus shards with generated images, for exercising training where no dataset is at hand.

Used by the training tests (a handful of rows) and the GPU benchmark (CXR-sized images, report-length
answers). Rows follow CORPUS_SCHEMA and the shard layout the corpus asset writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from radvlm_pipeline.layout import StorageLayout, image_root, shard_name
from radvlm_pipeline.schema import CORPUS_SCHEMA, conform

# (task, source, image dataset, [(question, answer), ...])
Sample = tuple[str, str, str, Sequence[tuple[str, str]]]


def write_image(path: Path, seed: int, size: tuple[int, int], sixteen_bit: bool) -> None:
    """Noise of the given (width, height); 16-bit PNG like PadChest-GR, else an 8-bit JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0]))
    if sixteen_bit:
        Image.fromarray((pixels * 256).astype(np.uint16)).save(path)
    else:
        Image.fromarray(pixels.astype(np.uint8)).convert("RGB").save(path, quality=90)


def write_corpus(
    storage_root: Path,
    data_root: Path,
    samples: Sequence[Sample],
    repeat: int = 1,
    image_size: tuple[int, int] = (60, 72),
) -> list[Path]:
    """Shards at ``<storage_root>/corpus/shards/<task>__<source>/part-00000.parquet`` (returned, sorted)."""
    records = []
    for copy in range(repeat):
        for index, (task, source, dataset, pairs) in enumerate(samples):
            sixteen_bit = dataset == "padchest_gr"
            image_path = f"images/{task}-{index}.{'png' if sixteen_bit else 'jpg'}"
            write_image(
                image_root(dataset, data_root, storage_root) / image_path, index, image_size, sixteen_bit
            )
            turns = []
            for turn, (question, answer) in enumerate(pairs):
                turns.append({"from": "human", "value": ("<image>\n" if turn == 0 else "") + question})
                turns.append({"from": "gpt", "value": answer})
            records.append(
                {
                    "id": hashlib.sha256(f"{task}|{source}|{index}|{copy}".encode()).hexdigest()[:16],
                    "source": source,
                    "task": task,
                    "split": "train",
                    "image_dataset": dataset,
                    "image_path": image_path,
                    "conversation": turns,
                    "turns": len(turns),
                    "template_id": None,
                    "source_ids": [f"img{index}"],
                    "llm_cache_keys": [],
                    "target_boxes": None,
                    "target_labels": None,
                }
            )
    frame = conform(pl.DataFrame(records, schema=CORPUS_SCHEMA), CORPUS_SCHEMA)
    files = []
    for (task, source), group in frame.group_by(["task", "source"], maintain_order=True):
        out = StorageLayout(storage_root).corpus.partition(f"{task}__{source}") / shard_name(0)
        out.parent.mkdir(parents=True, exist_ok=True)
        group.write_parquet(out)
        files.append(out)
    return sorted(files)
