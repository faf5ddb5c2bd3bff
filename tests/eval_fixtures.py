"""Small evaluation sets (CORPUS_SCHEMA, one Parquet per task, real images) for the evaluation tests.

Answers follow the corpus templates' wording (``radvlm_pipeline/corpus/templates.py``) and the
classification rows cover all 14 CheXpert labels, so the oracle can reach 100 on every metric.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from radvlm_pipeline.boxes import format_box
from radvlm_pipeline.datasets import image_root
from radvlm_pipeline.evaluation.generation import eval_set_path
from radvlm_pipeline.schema import CORPUS_SCHEMA, conform

REPORTS = [
    "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "There is a small left pleural effusion with adjacent atelectasis. Heart size is normal.",
    "Moderate cardiomegaly with mild pulmonary edema. A right PICC line ends in the SVC.",
]
# (answer text, target labels): every label occurs at least once.
CLASSIFICATION = [
    ("The image shows atelectasis, cardiomegaly and consolidation.", ["Atelectasis", "Cardiomegaly", "Consolidation"]),
    ("I can identify edema and enlarged cardiomediastinum.", ["Edema", "Enlarged Cardiomediastinum"]),
    ("Findings present: fracture, lung lesion and lung opacity.", ["Fracture", "Lung Lesion", "Lung Opacity"]),
    ("This radiograph shows pleural effusion and pleural other.", ["Pleural Effusion", "Pleural Other"]),
    ("On this chest X-ray I see pneumonia, pneumothorax and support devices.",
     ["Pneumonia", "Pneumothorax", "Support Devices"]),
    ("I see no abnormalities on this chest X-ray.", ["No Finding"]),
    ("The image shows support devices.", ["No Finding", "Support Devices"]),
]
GROUNDING = {
    "anatomical_grounding": ("chest_imagenome", [
        ("right lung", [[0.12, 0.18, 0.48, 0.86]]),
        ("aortic arch", [[0.52, 0.2, 0.64, 0.31]]),
    ]),
    "abnormality_grounding": ("vindr_cxr", [
        ("Nodule/Mass", [[0.2, 0.3, 0.28, 0.38], [0.61, 0.42, 0.7, 0.5]]),
        ("Aortic enlargement", [[0.5, 0.22, 0.62, 0.35]]),
    ]),
    "phrase_grounding": ("ms_cxr", [
        ("small left apical pneumothorax", [[0.59, 0.18, 0.77, 0.24]]),
        ("bibasilar opacities", [[0.1, 0.6, 0.4, 0.85], [0.6, 0.62, 0.88, 0.86]]),
    ]),
}
CONVERSATIONS = {
    "conversation": [
        [("What view is this X-ray?", "This is a frontal PA view."),
         ("Is there a pleural effusion?", "Yes, a small left pleural effusion."),
         ("Is the heart enlarged?", "No, the heart size is normal.")],
        [("What do you see?", "Cardiomegaly and mild pulmonary edema."), ("Any lines?", "A right PICC line.")],
    ],
    "grounded_conversation": [
        [("Is there a pneumothorax?", "Yes, a small left apical pneumothorax."),
         ("Where is it?", f"It is located at {format_box([0.59, 0.18, 0.77, 0.24])}.")],
    ],
}
SOURCES = {"report_generation": "mimic_cxr", "classification": "chexpert", "conversation": "mimic_cxr",
           "grounded_conversation": "ms_cxr"}


def write_image(path: Path, seed: int, size: tuple[int, int] = (80, 64)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0]))
    Image.fromarray(pixels.astype(np.uint8)).convert("RGB").save(path)


def _row(task: str, source: str, index: int, pairs, data_root: Path, storage_root: Path,
         boxes=None, labels=None) -> dict:
    image_path = f"eval/{task}-{index}.png"
    write_image(image_root(source, data_root, storage_root) / image_path, seed=zlib.crc32(f"{task}|{index}".encode()))
    turns = []
    for turn, (question, answer) in enumerate(pairs):
        turns.append({"from": "human", "value": ("<image>\n" if turn == 0 else "") + question})
        turns.append({"from": "gpt", "value": answer})
    return {
        "id": hashlib.sha256(f"{task}|{index}".encode()).hexdigest()[:16], "source": source, "task": task,
        "split": "test", "image_dataset": source, "image_path": image_path, "conversation": turns,
        "turns": len(turns), "template_id": None, "source_ids": [f"image:{task}-{index}"], "llm_cache_keys": [],
        "target_boxes": boxes, "target_labels": labels,
    }


def eval_rows(data_root: Path, storage_root: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    rows["report_generation"] = [
        _row("report_generation", "mimic_cxr", i, [("Write the radiology report for this chest X-ray.", report)],
             data_root, storage_root)
        for i, report in enumerate(REPORTS)
    ]
    rows["classification"] = [
        _row("classification", "chexpert", i, [("Which abnormalities can you see on this chest X-ray?", answer)],
             data_root, storage_root, labels=labels)
        for i, (answer, labels) in enumerate(CLASSIFICATION)
    ]
    for task, (source, items) in GROUNDING.items():
        rows[task] = [
            _row(task, source, i, [(f"Where is the {label} on this image?",
                                    f"The {label} is located at {', '.join(format_box(b) for b in boxes)}.")],
                 data_root, storage_root, boxes=boxes, labels=[label] * len(boxes))
            for i, (label, boxes) in enumerate(items)
        ]
    for task, dialogues in CONVERSATIONS.items():
        rows[task] = [_row(task, SOURCES[task], i, pairs, data_root, storage_root, labels=["Pneumothorax"])
                      for i, pairs in enumerate(dialogues)]
    return rows


def write_eval_sets(data_root: Path, storage_root: Path) -> dict[str, Path]:
    written = {}
    for task, rows in eval_rows(data_root, storage_root).items():
        path = eval_set_path(storage_root, task)
        path.parent.mkdir(parents=True, exist_ok=True)
        conform(pl.DataFrame(rows, schema=CORPUS_SCHEMA), CORPUS_SCHEMA).write_parquet(path)
        written[task] = path
    return written
