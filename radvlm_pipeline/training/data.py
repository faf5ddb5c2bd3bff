"""Corpus rows in, training batches out: a seeded global shuffle split exactly across processes.

The shards are grouped by task (``<task>__<source>/part-*.parquet``), so reading them in file order
would train on one task after another. A mixed multitask epoch needs random access, so only the text
columns of the recipe's rows are held, as LLaVA trainers hold their JSON (Arrow buffers: 350 MB and
1.2 s to load for the 1.05M rows of the corpus scale benchmark, whose text is shorter than real
reports); images are decoded lazily, one batch at a time, in DataLoader workers. The order is a function of (seed, epoch) alone, so a resumed run skips exactly the batches
it already trained on, and every process gets the same number of batches (DDP and DeepSpeed need
them in lock-step).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch.utils.data

from radvlm_pipeline.images import open_rgb
from radvlm_pipeline.layout import image_root
from radvlm_pipeline.training.processing import encode_row, load_processor, pad_rows

TEXT_COLUMNS = ["id", "task", "image_dataset", "image_path", "conversation"]


def load_training_rows(shard_files: list[str | Path]) -> pl.DataFrame:
    """The train-split rows of the shards, text columns only, in a deterministic order."""
    if not shard_files:
        raise ValueError("no corpus shards to train on")
    rows = (
        pl.scan_parquet([str(f) for f in shard_files])
        .filter(pl.col("split") == "train")
        .select(TEXT_COLUMNS)
        .sort("id")
        .collect()
        .rechunk()  # one contiguous chunk: picking a batch's rows is then ~100x faster (0.4 ms for 8 of 1M)
    )
    if rows.height == 0:
        raise ValueError(f"the {len(shard_files)} shard files hold no train-split rows")
    return rows


def conversation_lengths(rows: pl.DataFrame) -> np.ndarray:
    """Characters of each row's conversation: a free stand-in for its token count when grouping by length."""
    return (
        rows.select(
            pl.col("conversation")
            .list.eval(pl.element().struct.field("value").str.len_chars())
            .list.sum()
            .cast(pl.Int64)  # signed: the sort negates it
        )
        .to_series()
        .to_numpy()
    )


# Rows shuffled together before they are sorted by length into batches (LLaVA's "megabatch"), in rounds.
MEGABATCH_ROUNDS = 8


@dataclass(frozen=True)
class BatchPlan:
    """Which rows form each of this process's micro-batches in a given epoch.

    With ``lengths``, batches are grouped by length as LLaVA-OneVision's training does
    (``group_by_modality_length``; every row here has an image, so only length groups): each run of
    ``MEGABATCH_ROUNDS`` rounds of the shuffled order is sorted by length before it is cut into
    batches, so a batch pads to a length near its rows' own instead of to the longest conversation of
    the epoch (a third fewer tokens on the bundled sample), while every row still comes once per epoch
    in an order set by (seed, epoch)."""

    num_rows: int
    world_size: int
    rank: int
    micro_batch_size: int
    seed: int
    lengths: np.ndarray | None = field(default=None, compare=False, repr=False)  # per row, any unit

    @property
    def batches_per_epoch(self) -> int:
        """Per process; the last incomplete round of batches is dropped so all processes stay equal."""
        return self.num_rows // (self.world_size * self.micro_batch_size)

    def batches(self, epoch: int) -> np.ndarray:
        """Row indices, shape (batches_per_epoch, micro_batch_size)."""
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{self.num_rows} rows cannot fill one batch of {self.micro_batch_size} on {self.world_size} processes"
            )
        order = np.random.default_rng([self.seed, epoch]).permutation(self.num_rows)
        used = self.batches_per_epoch * self.world_size * self.micro_batch_size
        if self.lengths is not None:
            size = MEGABATCH_ROUNDS * self.world_size * self.micro_batch_size
            order = np.concatenate(
                [
                    chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                    for chunk in np.split(order[:used], range(size, used, size))
                ]
            )
        # Consecutive global batches go to consecutive ranks.
        per_batch = order[:used].reshape(-1, self.micro_batch_size)
        return per_batch[self.rank :: self.world_size]


def micro_batch_indices(plan: BatchPlan, start: int, total: int) -> Iterator[tuple[int, np.ndarray]]:
    """(global micro-batch number, row indices) from micro-batch ``start`` up to ``total``, across epochs."""
    for number in range(start, total):
        epoch, within = divmod(number, plan.batches_per_epoch)
        if within == 0 or number == start:
            epoch_batches = plan.batches(epoch)
        yield number, epoch_batches[within]


class CorpusBatches(torch.utils.data.IterableDataset):
    """An iterable dataset of collated batches; DataLoader workers take every n-th batch, and the
    DataLoader's round-robin over workers restores the plan's order exactly. Workers are spawned, not
    forked (see ``batch_loader``), so each loads the processor from the model directory itself.

    With ``cache_rows`` each row is decoded and encoded once and kept: a run of several epochs over a
    small corpus (the demo's) then skips a third of each later step. The batches are the same bytes."""

    def __init__(
        self,
        rows: pl.DataFrame,
        plan: BatchPlan,
        start: int,
        total: int,
        model_path: str,
        max_length: int,
        data_root,
        storage_root,
        cache_rows: bool = False,
    ):
        self.rows = rows
        self.plan = plan
        self.start = start
        self.total = total
        self.model_path = model_path
        self.max_length = max_length
        self.data_root = Path(data_root)
        self.storage_root = Path(storage_root)
        self.cache_rows = cache_rows

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        processor = load_processor(self.model_path)
        encoded: dict[int, dict] = {}

        def encode(index: int) -> dict:
            if index in encoded:
                return encoded[index]
            row = self.rows.row(index, named=True)
            image = open_rgb(
                image_root(row["image_dataset"], self.data_root, self.storage_root) / row["image_path"]
            )
            result = encode_row(processor, row["conversation"], image)
            if self.cache_rows:
                encoded[index] = result
            return result

        for number, indices in micro_batch_indices(self.plan, self.start, self.total):
            if number % workers != worker_id:
                continue
            yield pad_rows(
                [encode(index) for index in indices.tolist()],
                processor.tokenizer.pad_token_id,
                processor.image_token_id,
                self.max_length,
            )


def batch_loader(batches: CorpusBatches, num_workers: int) -> torch.utils.data.DataLoader:
    """Polars' thread pool does not survive fork (a forked worker deadlocks on its first query),
    hence spawned workers."""
    return torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        num_workers=num_workers,
        multiprocessing_context="spawn" if num_workers else None,
    )
