"""Checkpoints of a training run: resumable mid-run states and the final from_pretrained folder.

A restarted run must end with the weights an uninterrupted one would have, so a checkpoint is resumed
only by a run with the same settings (``config_hash``) and only once it is complete (its marker file is
written last, after every rank wrote its part).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import torch

from radvlm_pipeline.training.config import TrainConfig
from radvlm_pipeline.training.distributed import barrier, unwrap

CHECKPOINT_DONE = "checkpoint.json"  # written last: a checkpoint without it is incomplete


def latest_checkpoint(checkpoint_dir: Path, config_hash: str) -> tuple[Path, int] | None:
    """The newest complete checkpoint made with these settings; others are ignored, never loaded."""
    found = []
    for marker in checkpoint_dir.glob(f"step-*/{CHECKPOINT_DONE}"):
        info = json.loads(marker.read_text())
        if info["config_hash"] == config_hash:
            found.append((info["step"], marker.parent))
    if not found:
        return None
    step, path = max(found)
    return path, step


def save_checkpoint(
    engine, optimizer, scheduler, checkpoint_dir: Path, step: int, config: TrainConfig, rank: int
):
    path = checkpoint_dir / f"step-{step:08d}"
    if config.deepspeed:
        engine.save_checkpoint(str(checkpoint_dir), tag=path.name)  # every rank writes its shard
    elif rank == 0:
        path.mkdir(parents=True, exist_ok=True)
        state = {
            "model": unwrap(engine).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
        torch.save(state, path / "training_state.pt")
    barrier()
    if rank == 0:
        (path / CHECKPOINT_DONE).write_text(json.dumps({"step": step, "config_hash": config.config_hash()}))
        complete = sorted(p.parent for p in checkpoint_dir.glob(f"step-*/{CHECKPOINT_DONE}"))
        for old in complete[: -config.keep_checkpoints]:
            shutil.rmtree(old)
    barrier()


def load_checkpoint(engine, optimizer, scheduler, path: Path, config: TrainConfig) -> None:
    if config.deepspeed:
        engine.load_checkpoint(str(path.parent), tag=path.name)
        return
    state = torch.load(path / "training_state.pt", map_location="cpu", weights_only=True)
    unwrap(engine).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])


def resume(engine, optimizer, scheduler, checkpoint_dir: Path, config: TrainConfig, rank: int) -> int:
    """The step the run goes on from: that of the latest checkpoint made with these settings, else 0."""
    start_step = 0
    found = latest_checkpoint(checkpoint_dir, config.config_hash())
    if found:
        load_checkpoint(engine, optimizer, scheduler, found[0], config)
        start_step = found[1]
    elif rank == 0 and checkpoint_dir.exists():
        # Checkpoints of other settings can never be resumed here; left, they would confuse the pruning.
        shutil.rmtree(checkpoint_dir)
    barrier()
    return start_step


def save_final(engine, processor, config: TrainConfig, rank: int, final_dir: Path, summary: dict) -> None:
    module = unwrap(engine)
    gather = contextlib.nullcontext()
    if config.deepspeed:
        import deepspeed

        # ZeRO-3 holds a slice of each weight per rank: gather them to write one model.
        gather = deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None)
    with gather:
        if rank == 0:
            if final_dir.exists():
                shutil.rmtree(final_dir)
            module.save_pretrained(final_dir)
            processor.save_pretrained(final_dir)
            (final_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    barrier()
