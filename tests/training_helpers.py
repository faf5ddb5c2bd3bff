"""A tiny instruction corpus (CORPUS_SCHEMA shards + generated images) and a tiny model for training tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import polars as pl
from PIL import Image

from radvlm_pipeline.datasets import image_root
from radvlm_pipeline.schema import CORPUS_SCHEMA, conform

# (task, source, image dataset, conversation turns as (question, answer) pairs)
SAMPLE_ROWS = [
    ("report_generation", "mimic_cxr", "mimic_cxr", [("Write the findings.", "The heart size is normal. The lungs are clear.")]),
    ("report_generation", "mimic_cxr", "mimic_cxr", [("Describe this chest x-ray.", "There is a small left pleural effusion.")]),
    ("classification", "chexpert", "chexpert", [("Which abnormalities are present?", "Cardiomegaly, Edema.")]),
    ("classification", "chexpert", "chexpert", [("List the findings.", "No Finding.")]),
    ("phrase_grounding", "padchest_gr", "padchest_gr", [("Where is the nodule?", "[0.12, 0.34, 0.56, 0.78]")]),
    ("conversation", "mimic_cxr", "mimic_cxr", [
        ("What view is this?", "This is a frontal PA view."),
        ("Is there an effusion?", "Yes, on the left."),
        ("Where is it?", "At [0.55, 0.60, 0.90, 0.95]."),
    ]),
]


def write_image(path: Path, seed: int, sixteen_bit: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(72, 60))
    if sixteen_bit:
        Image.fromarray((pixels * 256).astype(np.uint16)).save(path)  # PadChest-GR style 16-bit PNG
    else:
        Image.fromarray(pixels.astype(np.uint8)).convert("RGB").save(path, quality=90)


def write_sample_corpus(storage_root: Path, data_root: Path, repeat: int = 1) -> list[Path]:
    """Shards at ``<storage_root>/corpus/shards/<task>__<source>/part-00000.parquet``; returns the files."""
    records = []
    for copy in range(repeat):
        for index, (task, source, dataset, pairs) in enumerate(SAMPLE_ROWS):
            sixteen_bit = dataset == "padchest_gr"
            image_path = f"images/{task}-{index}.{'png' if sixteen_bit else 'jpg'}"
            write_image(image_root(dataset, data_root, storage_root) / image_path, index, sixteen_bit)
            turns = []
            for turn, (question, answer) in enumerate(pairs):
                turns.append({"from": "human", "value": ("<image>\n" if turn == 0 else "") + question})
                turns.append({"from": "gpt", "value": answer})
            records.append({
                "id": hashlib.sha256(f"{task}|{source}|{index}|{copy}".encode()).hexdigest()[:16],
                "source": source, "task": task, "split": "train", "image_dataset": dataset,
                "image_path": image_path, "conversation": turns, "turns": len(turns),
                "template_id": None, "source_ids": [f"img{index}"], "llm_cache_keys": [],
                "target_boxes": None, "target_labels": None,
            })
    frame = conform(pl.DataFrame(records, schema=CORPUS_SCHEMA), CORPUS_SCHEMA)
    files = []
    for (task, source), group in frame.group_by(["task", "source"], maintain_order=True):
        out = storage_root / "corpus" / "shards" / f"{task}__{source}" / "part-00000.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        group.write_parquet(out)
        files.append(out)
    return sorted(files)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from radvlm_pipeline.training.tiny_model import build_model_directory

    return build_model_directory(tmp_path_factory.mktemp("models") / "tiny-llava-onevision")
