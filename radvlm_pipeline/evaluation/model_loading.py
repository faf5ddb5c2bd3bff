"""Loading an evaluated model from a local folder, never from the network.

A folder that is missing or not a from_pretrained layout raises ``BaselineUnavailable``: generation then
records the model as "not available" with that reason instead of failing, so the results tables show the
gap. Generation and the adapters both need that exception, so it lives here, below both.
"""

from __future__ import annotations

from pathlib import Path


class BaselineUnavailable(RuntimeError):
    """The model cannot be run here; the message says why and what to configure."""


def require_model_folder(path: Path | None, title: str) -> Path:
    if path is None or not Path(path).is_dir():
        raise BaselineUnavailable(f"{title}: no model folder at {path} (configure its local path)")
    if not (Path(path) / "config.json").is_file():
        raise BaselineUnavailable(
            f"{title}: {path} has no config.json, so it is not a from_pretrained folder"
        )
    return Path(path)


def pick_device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def model_dtype(device: str):
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def load_remote_code_model(path: Path | None, title: str, device: str | None):
    """(folder, device, model) for a model that ships its own modelling code, from the local folder only."""
    from transformers import AutoModelForCausalLM

    folder = require_model_folder(path, title)
    device = pick_device(device)
    model = (
        AutoModelForCausalLM.from_pretrained(
            folder, trust_remote_code=True, local_files_only=True, dtype=model_dtype(device)
        )
        .to(device)
        .eval()
    )
    return folder, device, model
