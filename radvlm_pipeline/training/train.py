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

What is the same for every recipe lives beside this file: processes and DeepSpeed in ``distributed.py``,
checkpoints in ``checkpoints.py``, the metrics reporter in ``reporting.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import time
from pathlib import Path

import torch

from radvlm_pipeline.layout import RunLayout
from radvlm_pipeline.training.checkpoints import resume, save_checkpoint, save_final
from radvlm_pipeline.training.config import TrainConfig
from radvlm_pipeline.training.data import (
    BatchPlan,
    CorpusBatches,
    batch_loader,
    conversation_lengths,
    load_training_rows,
)
from radvlm_pipeline.training.distributed import all_reduce_sum, setup_distributed, shutdown, wrap_model
from radvlm_pipeline.training.processing import load_processor
from radvlm_pipeline.training.reporting import Reporter

# ------------------------------------------------------------------------------------------------
# The model and its two learning rates


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


# ------------------------------------------------------------------------------------------------
# The run


def train(config: TrainConfig, pipes=None) -> dict:
    """Run the whole schedule (or resume it) and return the summary saved beside the final weights.

    ``pipes`` receives what Dagster Pipes would when the run is inside the Dagster step's own process
    (``reporting.Reporter``); None: Pipes is opened when Dagster launched this process."""
    # Processes, precision, output folder
    use_deepspeed = config.deepspeed is not None
    rank, world_size, device = setup_distributed(use_deepspeed)
    use_gpu = device.type == "cuda"
    bf16 = config.precision == "bf16" or (config.precision == "auto" and use_gpu)
    output_dir = Path(config.output_dir)
    run = RunLayout(output_dir)
    checkpoint_dir = run.checkpoints
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)

    # Data and model (the rows first: a batch they cannot fill fails before the model is loaded)
    rows = load_training_rows(config.shard_files)
    lengths = conversation_lengths(rows) if config.group_by_length else None
    plan = BatchPlan(rows.height, world_size, rank, config.micro_batch_size, config.seed, lengths)
    accumulation = config.accumulation_steps(world_size)
    if plan.batches_per_epoch < accumulation:
        # One optimizer step would see some rows several times: not what an epoch of this batch means.
        raise ValueError(
            f"{rows.height} training rows do not fill one global batch of {config.global_batch_size}: "
            "lower global_batch_size"
        )
    total_steps = math.ceil(plan.batches_per_epoch * config.epochs / accumulation)
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    processor = load_processor(config.model_path)
    model = load_model(config, use_gpu).to(device)

    # Optimiser and schedule, the model wrapped for the processes, resumed where a checkpoint left off
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.AdamW(parameter_groups(model, config), betas=(0.9, 0.999), eps=1e-8)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps
    )
    engine, optimizer, scheduler = wrap_model(model, optimizer, scheduler, config, world_size, device, bf16)
    start_step = resume(engine, optimizer, scheduler, checkpoint_dir, config, rank)

    with contextlib.ExitStack() as pipes_stack:
        reporter = Reporter(output_dir, rank, start_step, pipes_stack, pipes)
        reporter.info(
            f"recipe={config.recipe} profile={config.profile} rows={rows.height} processes={world_size} "
            f"global_batch={config.global_batch_size} accumulation={accumulation} device={device.type} "
            f"bf16={bf16} steps={total_steps} resumed_from_step={start_step} deepspeed={config.deepspeed}"
        )
        # Data, from the batch the run resumes at
        batches = CorpusBatches(
            rows,
            plan,
            start_step * accumulation,
            total_steps * accumulation,
            config.model_path,
            config.max_length,
            config.data_root,
            config.storage_root,
            cache_rows=config.cache_encoded_rows,
        )
        loader = batch_loader(batches, config.num_workers)

        # The loop
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and not use_deepspeed)
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
                    "samples_seen": step * config.global_batch_size,
                    "wall_s": wall,
                },
                announce=step % config.log_every_steps == 0 or step == total_steps,
            )
            if step % config.save_every_steps == 0 and step < total_steps:
                save_checkpoint(engine, optimizer, scheduler, checkpoint_dir, step, config, rank)

        # Save
        wall = time.perf_counter() - started
        trained_steps = total_steps - start_step
        summary = {
            "recipe": config.recipe,
            "profile": config.profile,
            "config_hash": config.config_hash(),
            "global_batch_size": config.global_batch_size,
            "gradient_accumulation_steps": accumulation,
            "steps": total_steps,
            "steps_this_run": trained_steps,
            "resumed_from_step": start_step,
            "samples_seen": total_steps * config.global_batch_size,
            # None when this invocation found the run already finished (nothing trained, nothing measured).
            "final_loss": loss_value if trained_steps else None,
            "tokens_per_s": tokens_total / wall if trained_steps else None,
            "wall_time_s": wall,
            "processes": world_size,
            "output_path": str(run.final),
        }
        save_final(engine, processor, config, rank, run.final, summary)
        reporter.info(f"saved {run.final}")
        reporter.finish(summary)

    del engine, model, optimizer  # nothing left for the process group to wait on
    gc.collect()
    shutdown()
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
