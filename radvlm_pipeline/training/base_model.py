"""Which model the fine-tuning starts from: a configured directory, or the embedded tiny model.

The choice is recorded in ``<storage_root>/models/base/current.json`` so that every fine-tuning run
(one per recipe, possibly on a cluster) reads the same path without Dagster passing objects around.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from radvlm_pipeline.layout import StorageLayout


def fingerprint(model_dir: Path, sample_bytes: int = 1 << 20) -> str:
    """Changes when the config or the weights change. A 7B model is 15 GB, so each weights file counts
    by its size and its first and last megabyte (the header names every tensor; changed weights change
    the sampled bytes), not by every byte."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors.index.json", "radvlm_build.json"):
        if (model_dir / name).exists():
            digest.update(name.encode() + (model_dir / name).read_bytes())
    for weights in sorted(model_dir.glob("*.safetensors")):
        size = weights.stat().st_size
        with weights.open("rb") as handle:
            head = handle.read(sample_bytes)
            handle.seek(max(0, size - sample_bytes))
            tail = handle.read()
        digest.update(f"{weights.name}:{size}".encode() + head + tail)
    return digest.hexdigest()[:16]


def prepare_base_model(storage_root: Path, configured_path: str | None = None) -> dict:
    """Resolve (building the tiny model if needed) and record the base model; returns its description."""
    if configured_path:
        path = Path(configured_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"base model {path} has no config.json: give a Hugging Face-format LLaVA-OneVision directory"
            )
    else:
        from radvlm_pipeline.training.tiny_model import build_model_directory

        # Rebuilt every time (about a second; deterministic), so a changed builder never leaves an old model.
        path = build_model_directory(StorageLayout(storage_root).tiny_model_dir)
    config = json.loads((path / "config.json").read_text())
    description = {
        "path": str(path),
        "fingerprint": fingerprint(path),
        "built_tiny_model": not configured_path,
        "architectures": config.get("architectures", []),
        "text_hidden_size": config.get("text_config", {}).get("hidden_size"),
        "text_layers": config.get("text_config", {}).get("num_hidden_layers"),
    }
    record = StorageLayout(storage_root).base_model_record
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(description, indent=2) + "\n")
    return description


def current_base_model(storage_root: Path) -> dict:
    record = StorageLayout(storage_root).base_model_record
    if not record.exists():
        raise FileNotFoundError(f"{record} does not exist: materialize the base_model asset first")
    return json.loads(record.read_text())
