"""Processes, devices and the DeepSpeed / DDP wrapping of the training run.

Kept out of ``train.py`` so that file reads as the recipe itself; everything here is the same whether
one process trains on a CPU or eight on GPUs, and a no-op where there is nothing to coordinate.
"""

from __future__ import annotations

import json
import os

import torch
import torch.distributed as dist

from radvlm_pipeline.torch_threads import wants_one_thread
from radvlm_pipeline.training.config import TrainConfig


def setup_distributed(use_deepspeed: bool) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from the launcher's environment (torchrun, deepspeed, srun)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if wants_one_thread(device.type):
        torch.set_num_threads(1)
    if world_size > 1 or use_deepspeed:
        if use_deepspeed:
            import deepspeed

            deepspeed.init_distributed()  # picks nccl on GPU, gloo on CPU
        else:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world_size, device


def deepspeed_settings(config: TrainConfig, world_size: int, bf16: bool) -> dict:
    """The shipped ZeRO JSON plus the values this run decides (batch sizes, clipping, precision)."""
    settings = json.loads(config.deepspeed_config_path().read_text())
    settings.update(
        train_micro_batch_size_per_gpu=config.micro_batch_size,
        gradient_accumulation_steps=config.accumulation_steps(world_size),
        train_batch_size=config.global_batch_size,
        gradient_clipping=config.max_grad_norm,
        bf16={"enabled": bf16},
    )
    return settings


def wrap_model(
    model, optimizer, scheduler, config: TrainConfig, world_size: int, device: torch.device, bf16: bool
):
    """(engine, optimizer, scheduler): the model as the launcher's processes train it together.

    DeepSpeed hands back its own optimiser and scheduler, which the loop must step from then on.
    """
    if config.deepspeed is not None:
        import deepspeed

        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=scheduler,
            config=deepspeed_settings(config, world_size, bf16),
        )
    elif world_size > 1:
        engine = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    else:
        engine = model
    return engine, optimizer, scheduler


def unwrap(engine):
    """The model itself, under a DeepSpeed engine or DDP wrapper if there is one."""
    return engine.module if hasattr(engine, "module") else engine


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Tear down explicitly: a gloo group left to the interpreter's exit sometimes hangs."""
    barrier()
    if dist.is_initialized():
        dist.destroy_process_group()
