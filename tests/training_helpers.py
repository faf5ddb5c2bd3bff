"""A tiny instruction corpus (CORPUS_SCHEMA shards + generated images) and a tiny model for training tests."""

from __future__ import annotations

from pathlib import Path

from radvlm_pipeline.training.synthetic import write_corpus

SAMPLE_ROWS = [
    (
        "report_generation",
        "mimic_cxr",
        "mimic_cxr",
        [("Write the findings.", "The heart size is normal. The lungs are clear.")],
    ),
    (
        "report_generation",
        "mimic_cxr",
        "mimic_cxr",
        [("Describe this chest x-ray.", "There is a small left pleural effusion.")],
    ),
    (
        "classification",
        "chexpert",
        "chexpert",
        [("Which abnormalities are present?", "Cardiomegaly, Edema.")],
    ),
    ("classification", "chexpert", "chexpert", [("List the findings.", "No Finding.")]),
    (
        "phrase_grounding",
        "padchest_gr",
        "padchest_gr",
        [("Where is the nodule?", "[0.12, 0.34, 0.56, 0.78]")],
    ),
    (
        "conversation",
        "mimic_cxr",
        "mimic_cxr",
        [
            ("What view is this?", "This is a frontal PA view."),
            ("Is there an effusion?", "Yes, on the left."),
            ("Where is it?", "At [0.55, 0.60, 0.90, 0.95]."),
        ],
    ),
]


def write_sample_corpus(storage_root: Path, data_root: Path, repeat: int = 1) -> list[Path]:
    """12 rows at repeat=2 over four tasks; PadChest-GR's image is a 16-bit PNG."""
    return write_corpus(storage_root, data_root, SAMPLE_ROWS, repeat=repeat)
