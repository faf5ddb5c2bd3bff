"""Fine-tune LLaVA-OneVision on the instruction corpus. One file, top to bottom, like nanoGPT.

    python -m radvlm_pipeline.training.train --config run.yaml                        # one process
    torchrun --nproc_per_node 8 -m radvlm_pipeline.training.train --config run.yaml   # DDP
    deepspeed --num_gpus 8 --module radvlm_pipeline.training.train --config run.yaml  # with deepspeed: zero2|zero3

The model and processor come from ``config.model_path`` with ``from_pretrained``; nothing is downloaded.
Loss is on assistant tokens only (multi-turn history included, see ``processing.py``). The vision
encoder learns at ``lr_vision``, projector and language model at ``lr_language``, on a cosine schedule
with warmup. Checkpoints go to ``<output_dir>/checkpoints/step-N`` and a restarted run resumes from the
latest one made with the same settings; the result is ``<output_dir>/final``, a from_pretrained directory.

Metrics (loss, learning rate, tokens/s, samples seen, wall time) go to ``<output_dir>/metrics.jsonl``
and the log, and to Dagster through Dagster Pipes when Dagster launched the run (rank 0 reports).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import torch
import torch.distributed as dist

from radvlm_pipeline.training.config import TrainConfig
from radvlm_pipeline.training.data import BatchPlan, CorpusBatches, batch_loader, load_training_rows
from radvlm_pipeline.training.processing import load_processor

log = logging.getLogger("radvlm.train")
CHECKPOINT_DONE = "checkpoint.json"  # written last: a checkpoint without it is incomplete


# ------------------------------------------------------------------------------------------------
# Processes and devices


def setup_distributed(use_deepspeed: bool) -> tuple[int, int, int, torch.device]:
    """(rank, world size, local rank, device) from the launcher's environment (torchrun, deepspeed, srun)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    elif "OMP_NUM_THREADS" not in os.environ:
        # CPU runs are the demo and the tests: matrices so small that extra threads only spin, and on a
        # busy machine spinning threads made steps 50x slower. torchrun sets the same default.
        torch.set_num_threads(1)
    if world_size > 1 or use_deepspeed:
        if use_deepspeed:
            import deepspeed

            deepspeed.init_distributed()  # picks nccl on GPU, gloo on CPU
        else:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world_size, local_rank, device


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


# ------------------------------------------------------------------------------------------------
# Reporting


class Reporter:
    """Writes metrics to metrics.jsonl and the log; mirrors them to Dagster Pipes when launched by Dagster."""

    def __init__(self, output_dir: Path, rank: int, start_step: int, pipes_stack: contextlib.ExitStack):
        self.active = rank == 0
        self.pipes = None
        self.metrics_path = output_dir / "metrics.jsonl"
        if not self.active:
            return
        if os.environ.get("DAGSTER_PIPES_CONTEXT"):  # launched by Dagster; dagster-pipes is needed only then
            from dagster_pipes import open_dagster_pipes

            self.pipes = pipes_stack.enter_context(open_dagster_pipes())
        # A resumed run rewrites history after its checkpoint: steps past it are trained again.
        kept = []
        if self.metrics_path.exists():
            kept = [
                line
                for line in self.metrics_path.read_text().splitlines()
                if json.loads(line)["step"] <= start_step
            ]
        self.metrics_path.write_text("".join(line + "\n" for line in kept))

    def info(self, message: str) -> None:
        if self.active:
            log.info(message)
            if self.pipes:
                self.pipes.log.info(message)

    def step(self, metrics: dict, announce: bool) -> None:
        """Every step goes to metrics.jsonl (the loss curve); only announced ones to the log and to
        Dagster, so a long run does not flood the event log."""
        if not self.active:
            return
        with self.metrics_path.open("a") as out:
            out.write(json.dumps(metrics) + "\n")
        if not announce:
            return
        line = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        if self.pipes:  # into the Dagster run's log only: the launcher forwards stderr to its terminal too
            self.pipes.log.info(line)
            self.pipes.report_custom_message(metrics)
        else:
            log.info(line)

    def finish(self, summary: dict) -> None:
        if self.active and self.pipes:
            self.pipes.report_asset_materialization(metadata=summary)


# ------------------------------------------------------------------------------------------------
# Model, optimiser, schedule


def load_model(config: TrainConfig, use_gpu: bool):
    from transformers import LlavaOnevisionForConditionalGeneration

    # fp32 master weights; bf16 compute comes from autocast (or DeepSpeed's bf16 mode).
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(config.model_path, dtype=torch.float32)
    if config.gradient_checkpointing == "on" or (config.gradient_checkpointing == "auto" and use_gpu):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model


def parameter_groups(model, config: TrainConfig) -> list[dict]:
    """The paper's two learning rates: vision encoder vs projector + language model."""
    vision, rest = [], []
    for name, parameter in model.named_parameters():
        (vision if "vision_tower" in name else rest).append(parameter)
    if not vision or not rest:
        raise ValueError("could not split the model into vision encoder and the rest by parameter name")
    return [
        {"params": vision, "lr": config.lr_vision, "weight_decay": config.weight_decay, "name": "vision"},
        {"params": rest, "lr": config.lr_language, "weight_decay": config.weight_decay, "name": "language"},
    ]


def deepspeed_settings(config: TrainConfig, world_size: int, bf16: bool) -> dict:
    """The shipped ZeRO JSON plus the values this run decides (batch sizes, clipping, precision)."""
    settings = json.loads(config.deepspeed_config_path().read_text())
    settings.update(
        train_micro_batch_size_per_gpu=config.micro_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        train_batch_size=config.micro_batch_size * config.gradient_accumulation_steps * world_size,
        gradient_clipping=config.max_grad_norm,
        bf16={"enabled": bf16},
    )
    return settings


# ------------------------------------------------------------------------------------------------
# Checkpoints


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
        module = engine.module if hasattr(engine, "module") else engine
        state = {
            "model": module.state_dict(),
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
    module = engine.module if hasattr(engine, "module") else engine
    module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])


def save_final(engine, processor, config: TrainConfig, rank: int, final_dir: Path, summary: dict) -> None:
    module = engine.module if hasattr(engine, "module") else engine
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


# ------------------------------------------------------------------------------------------------
# The run


def train(config: TrainConfig) -> dict:
    use_deepspeed = config.deepspeed is not None
    rank, world_size, local_rank, device = setup_distributed(use_deepspeed)
    use_gpu = device.type == "cuda"
    bf16 = config.precision == "bf16" or (config.precision == "auto" and use_gpu)
    output_dir = Path(config.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)

    processor = load_processor(config.model_path)
    model = load_model(config, use_gpu).to(device)
    rows = load_training_rows(config.shard_files)
    plan = BatchPlan(rows.height, world_size, rank, config.micro_batch_size, config.seed)
    accumulation = config.gradient_accumulation_steps
    total_steps = math.ceil(plan.batches_per_epoch * config.epochs / accumulation)
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    if total_steps == 0:
        raise ValueError(f"{rows.height} rows make no optimizer step at this batch size and world size")

    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.AdamW(parameter_groups(model, config), betas=(0.9, 0.999), eps=1e-8)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps
    )
    if use_deepspeed:
        import deepspeed

        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=scheduler,
            config=deepspeed_settings(config, world_size, bf16),
        )
    elif world_size > 1:
        engine = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if use_gpu else None, find_unused_parameters=True
        )
    else:
        engine = model

    start_step = 0
    resume = latest_checkpoint(checkpoint_dir, config.config_hash())
    if resume:
        load_checkpoint(engine, optimizer, scheduler, resume[0], config)
        start_step = resume[1]
    elif rank == 0 and checkpoint_dir.exists():
        # Checkpoints of other settings can never be resumed here; left, they would confuse the pruning.
        shutil.rmtree(checkpoint_dir)
    barrier()

    with contextlib.ExitStack() as pipes_stack:
        reporter = Reporter(output_dir, rank, start_step, pipes_stack)
        reporter.info(
            f"recipe={config.recipe} rows={rows.height} processes={world_size} device={device.type} "
            f"bf16={bf16} steps={total_steps} resumed_from_step={start_step} deepspeed={config.deepspeed}"
        )
        batches = CorpusBatches(
            rows,
            plan,
            start_step * accumulation,
            total_steps * accumulation,
            config.model_path,
            config.max_length,
            config.data_root,
            config.storage_root,
        )
        loader = batch_loader(batches, config.num_workers)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and not use_deepspeed)
        batch_size = config.micro_batch_size * accumulation * world_size
        started = time.perf_counter()
        tokens_total = 0.0
        loss_value = float("nan")
        micro_batches = iter(loader)
        engine.train()
        for step in range(start_step + 1, total_steps + 1):
            step_started = time.perf_counter()
            loss_sum, tokens, answer_tokens = 0.0, 0.0, 0.0
            for micro in range(accumulation):
                batch = {k: v.to(device) for k, v in next(micro_batches).items()}
                batch["pixel_values"] = batch["pixel_values"].to(
                    torch.bfloat16 if use_deepspeed and bf16 else torch.float32
                )
                labelled = int((batch["labels"] != -100).sum())
                # Normalising by the labelled count (never 0) keeps an answer-less batch from giving NaN.
                sync = contextlib.nullcontext()
                if isinstance(engine, torch.nn.parallel.DistributedDataParallel) and micro < accumulation - 1:
                    sync = engine.no_sync()
                with sync, autocast:
                    loss = engine(**batch, num_items_in_batch=max(labelled, 1)).loss
                    if use_deepspeed:
                        engine.backward(loss)
                        engine.step()  # DeepSpeed steps the optimiser at the accumulation boundary itself
                    else:
                        (loss / accumulation).backward()
                loss_sum += float(loss.detach())
                tokens += float(batch["attention_mask"].sum())
                answer_tokens += labelled
            if not use_deepspeed:
                torch.nn.utils.clip_grad_norm_(engine.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum, tokens, answer_tokens = all_reduce_sum([loss_sum, tokens, answer_tokens], device)
            loss_value = loss_sum / (accumulation * world_size)
            tokens_total += tokens
            wall = time.perf_counter() - started
            reporter.step(
                {
                    "step": step,
                    "loss": loss_value,
                    "lr_language": scheduler.get_last_lr()[1],
                    "tokens_per_s": tokens / (time.perf_counter() - step_started),
                    "answer_tokens": int(answer_tokens),  # the labelled ones; 0 would mean nothing is learnt
                    "samples_seen": step * batch_size,
                    "wall_s": wall,
                },
                announce=step % config.log_every_steps == 0 or step == total_steps,
            )
            if step % config.save_every_steps == 0 and step < total_steps:
                save_checkpoint(engine, optimizer, scheduler, checkpoint_dir, step, config, rank)

        wall = time.perf_counter() - started
        trained_steps = total_steps - start_step
        summary = {
            "recipe": config.recipe,
            "config_hash": config.config_hash(),
            "steps": total_steps,
            "steps_this_run": trained_steps,
            "resumed_from_step": start_step,
            "samples_seen": total_steps * batch_size,
            # None when this invocation found the run already finished (nothing trained, nothing measured).
            "final_loss": loss_value if trained_steps else None,
            "tokens_per_s": tokens_total / wall if trained_steps else None,
            "wall_time_s": wall,
            "processes": world_size,
            "output_path": str(output_dir / "final"),
        }
        save_final(engine, processor, config, rank, output_dir / "final", summary)
        reporter.info(f"saved {output_dir / 'final'}")
        reporter.finish(summary)

    # Tear down explicitly: a gloo group left to the interpreter's exit sometimes hangs.
    del engine, model, optimizer
    gc.collect()
    barrier()
    if dist.is_initialized():
        dist.destroy_process_group()
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fine-tune LLaVA-OneVision on the RadVLM corpus.")
    parser.add_argument("--config", required=True, type=Path, help="training YAML (see TrainConfig)")
    parser.add_argument(
        "--local_rank", "--local-rank", type=int, default=None, help="set by the deepspeed launcher"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    train(TrainConfig.from_yaml(args.config))


if __name__ == "__main__":
    main()
