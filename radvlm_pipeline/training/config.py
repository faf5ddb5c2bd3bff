"""The training run's settings: one YAML file a researcher can read, edit and re-run by hand.

Defaults are the paper's: full fine-tune, learning rate 2e-6 for the vision encoder and 1e-5 for the
projector and language model, cosine schedule with 3% warmup, one epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

DEEPSPEED_CONFIG_DIR = Path(__file__).parent / "deepspeed"
DEEPSPEED_CONFIGS = {
    "zero2": DEEPSPEED_CONFIG_DIR / "zero2.json",
    "zero3": DEEPSPEED_CONFIG_DIR / "zero3.json",
}

# Fields that change how a run is logged or checkpointed, not the weights it ends with.
_NOT_IN_HASH = {"output_dir", "log_every_steps", "save_every_steps", "keep_checkpoints", "num_workers"}


@dataclass
class TrainConfig:
    model_path: str  # a from_pretrained directory: the tiny model or llava-onevision-qwen2-7b-si (HF format)
    output_dir: str  # checkpoints/, metrics.jsonl and final/ go here
    shard_files: list[str]  # corpus Parquet shards (CORPUS_SCHEMA); rows with split == "train" are used
    data_root: str  # where the dataset folders (images) are
    storage_root: str  # where derived images are
    recipe: str = "all"
    seed: int = 0
    epochs: float = 1.0
    max_steps: int | None = None  # stop early (demo, smoke tests); None: the whole schedule
    micro_batch_size: int = 1  # per process
    gradient_accumulation_steps: int = 1
    lr_vision: float = 2e-6
    lr_language: float = 1e-5  # projector and language model
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    max_length: int = 8192
    precision: str = "auto"  # "auto": bf16 on GPU, fp32 on CPU; or "bf16" / "fp32"
    gradient_checkpointing: str = "auto"  # "auto": on GPU only; or "on" / "off"
    deepspeed: str | None = None  # "zero2", "zero3" or a path to a DeepSpeed JSON; None: DDP / single process
    save_every_steps: int = 500
    keep_checkpoints: int = 2
    log_every_steps: int = 20  # log lines and Dagster messages; metrics.jsonl gets every step
    num_workers: int = 0  # DataLoader processes decoding images per training process

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        values = yaml.safe_load(Path(path).read_text())
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training settings in {path}: {sorted(unknown)}")
        return cls(**values)

    def to_yaml(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(dataclasses.asdict(self), sort_keys=False))
        return path

    def config_hash(self) -> str:
        """Identifies what the weights depend on: a checkpoint only resumes a run with the same hash."""
        values = {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_IN_HASH}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]

    def deepspeed_config_path(self) -> Path | None:
        if self.deepspeed is None:
            return None
        return DEEPSPEED_CONFIGS.get(self.deepspeed, Path(self.deepspeed))
