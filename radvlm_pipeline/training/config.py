"""The training run's settings: one YAML file a researcher can read, edit and re-run by hand.

Defaults are the paper's: full fine-tune, learning rate 2e-6 for the vision encoder and 1e-5 for the
projector and language model, cosine schedule with 3% warmup, one epoch, a global batch of 256 samples,
sequences up to 32,768 tokens, batches grouped by length as LLaVA-OneVision's training scripts do. A
run states its global batch; how it is reached (micro-batch per process x gradient accumulation x
processes) follows from the micro-batch and the launcher's processes, so the same config trains the
same way on one GPU or on 128.

A *profile* is a named set of values on top of those defaults. ``paper`` changes nothing. ``demo`` is
for the embedded tiny model, which starts from random weights: the paper's rates were set for a
pretrained 7B model and move a random toy so little that nothing is learnt in the demo's time.
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

PAPER, DEMO = "paper", "demo"
PROFILES: dict[str, dict] = {
    PAPER: {},
    # The tiny random model on the bundled sample (~1,000 rows for recipe ``all``): rates a randomly
    # initialised transformer of that size learns at, several epochs and small global batches for enough
    # optimizer steps, sequences cut at 128 tokens (every classification, anatomical and abnormality
    # grounding sample and nearly every report and phrase grounding sample fits whole; conversations
    # keep their first round, detection lists their first boxes). Chosen among four settings on a
    # validation split of the training rows, never on the evaluation sets (benchmarks/RESULTS.md).
    DEMO: {
        "lr_vision": 6e-3,
        "lr_language": 6e-3,
        "epochs": 5.0,
        "global_batch_size": 16,
        "micro_batch_size": 16,
        "max_length": 128,
        # One-task batches (what grouping by length makes of the sample) left the toy unable to ground or
        # classify at all at lr 3e-3 over 4 epochs (benchmarks/RESULTS.md).
        "group_by_length": False,
        "cache_encoded_rows": True,
    },
}

# Fields that change how a run is logged or checkpointed, not the weights it ends with; ``profile`` only
# names where the values came from.
_NOT_IN_HASH = {
    "output_dir",
    "log_every_steps",
    "save_every_steps",
    "keep_checkpoints",
    "num_workers",
    "cache_encoded_rows",
    "profile",
}


def profile_settings(profile: str, **overrides) -> dict:
    """The profile's values with ``overrides`` on top, as TrainConfig keyword arguments."""
    if profile not in PROFILES:
        raise ValueError(f"unknown training profile {profile!r}; known: {sorted(PROFILES)}")
    return {"profile": profile, **PROFILES[profile], **overrides}


@dataclass
class TrainConfig:
    model_path: str  # a from_pretrained directory: the tiny model or llava-onevision-qwen2-7b-si (HF format)
    output_dir: str  # checkpoints/, metrics.jsonl and final/ go here
    shard_files: list[str]  # corpus Parquet shards (CORPUS_SCHEMA); rows with split == "train" are used
    data_root: str  # where the dataset folders (images) are
    storage_root: str  # where derived images are
    recipe: str = "all"
    profile: str = PAPER  # the PROFILES entry these values started from (a label: the values decide)
    seed: int = 0
    epochs: float = 1.0
    max_steps: int | None = None  # stop early (smoke tests); None: the whole schedule
    global_batch_size: int = 256  # samples per optimizer step, all processes together (the paper's)
    micro_batch_size: int = 1  # per process and forward pass; accumulation makes up the rest
    lr_vision: float = 2e-6
    lr_language: float = 1e-5  # projector and language model
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    max_length: int = 32768  # the paper's; longer sequences lose their tail
    group_by_length: bool = True  # batches of similar length (LLaVA-OneVision's group_by_modality_length;
    # every row here has an image, so it groups by length alone)
    # Keep each row's tokens and pixels after its first epoch (per data process): for several epochs over
    # a small corpus; ~100 KB a row for the tiny model, far more at 384 px, so off for real runs.
    cache_encoded_rows: bool = False
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

    def accumulation_steps(self, world_size: int) -> int:
        """Micro-batches each process accumulates per optimizer step to make up the global batch."""
        per_pass = self.micro_batch_size * world_size
        if self.global_batch_size < per_pass or self.global_batch_size % per_pass:
            raise ValueError(
                f"global batch {self.global_batch_size} is not a multiple of micro-batch "
                f"{self.micro_batch_size} x {world_size} processes: change global_batch_size or micro_batch_size"
            )
        return self.global_batch_size // per_pass

    def deepspeed_config_path(self) -> Path | None:
        if self.deepspeed is None:
            return None
        return DEEPSPEED_CONFIGS.get(self.deepspeed, Path(self.deepspeed))
