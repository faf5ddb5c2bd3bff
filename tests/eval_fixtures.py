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
from radvlm_pipeline.layout import StorageLayout, image_root
from radvlm_pipeline.schema import CORPUS_SCHEMA, conform

REPORTS = [
    "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "There is a small left pleural effusion with adjacent atelectasis. Heart size is normal.",
    "Moderate cardiomegaly with mild pulmonary edema. A right PICC line ends in the SVC.",
]
# (answer text, target labels): every label occurs at least once.
CLASSIFICATION = [
    (
        "The image shows atelectasis, cardiomegaly and consolidation.",
        ["Atelectasis", "Cardiomegaly", "Consolidation"],
    ),
    ("I can identify edema and enlarged cardiomediastinum.", ["Edema", "Enlarged Cardiomediastinum"]),
    (
        "Findings present: fracture, lung lesion and lung opacity.",
        ["Fracture", "Lung Lesion", "Lung Opacity"],
    ),
    ("This radiograph shows pleural effusion and pleural other.", ["Pleural Effusion", "Pleural Other"]),
    (
        "On this chest X-ray I see pneumonia, pneumothorax and support devices.",
        ["Pneumonia", "Pneumothorax", "Support Devices"],
    ),
    ("I see no abnormalities on this chest X-ray.", ["No Finding"]),
    ("The image shows support devices.", ["No Finding", "Support Devices"]),
]
GROUNDING = {
    "anatomical_grounding": (
        "chest_imagenome",
        [
            ("right lung", [[0.12, 0.18, 0.48, 0.86]]),
            ("aortic arch", [[0.52, 0.2, 0.64, 0.31]]),
        ],
    ),
    "abnormality_grounding": (
        "vindr_cxr",
        [
            ("Nodule/Mass", [[0.2, 0.3, 0.28, 0.38], [0.61, 0.42, 0.7, 0.5]]),
            ("Aortic enlargement", [[0.5, 0.22, 0.62, 0.35]]),
        ],
    ),
    "phrase_grounding": (
        "ms_cxr",
        [
            ("small left apical pneumothorax", [[0.59, 0.18, 0.77, 0.24]]),
            ("bibasilar opacities", [[0.1, 0.6, 0.4, 0.85], [0.6, 0.62, 0.88, 0.86]]),
        ],
    ),
}
CONVERSATIONS = {
    "conversation": [
        [
            ("What view is this X-ray?", "This is a frontal PA view."),
            ("Is there a pleural effusion?", "Yes, a small left pleural effusion."),
            ("Is the heart enlarged?", "No, the heart size is normal."),
        ],
        [
            ("What do you see?", "Cardiomegaly and mild pulmonary edema."),
            ("Any lines?", "A right PICC line."),
        ],
    ],
    "grounded_conversation": [
        [
            ("Is there a pneumothorax?", "Yes, a small left apical pneumothorax."),
            ("Where is it?", f"It is located at {format_box([0.59, 0.18, 0.77, 0.24])}."),
        ],
    ],
}
# The facts the fixture conversations were "written from" (what the judge is given as reference data).
CONVERSATION_REFERENCE = {
    "report": "Small left apical pneumothorax. Small left pleural effusion. Heart size is normal.",
    "abnormalities": "Pleural Effusion, Pneumothorax",
    "view": "PA",
    "sex": "F",
    "observations": f"small left apical pneumothorax: {format_box([0.59, 0.18, 0.77, 0.24])}",
}
SOURCES = {
    "report_generation": "mimic_cxr",
    "classification": "chexpert",
    "conversation": "mimic_cxr",
    "grounded_conversation": "ms_cxr",
}


def write_image(path: Path, seed: int, size: tuple[int, int] = (80, 64)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0]))
    Image.fromarray(pixels.astype(np.uint8)).convert("RGB").save(path)


def _row(
    task: str, source: str, index: int, pairs, data_root: Path, storage_root: Path, boxes=None, labels=None
) -> dict:
    image_path = f"eval/{task}-{index}.png"
    write_image(
        image_root(source, data_root, storage_root) / image_path, seed=zlib.crc32(f"{task}|{index}".encode())
    )
    turns = []
    for turn, (question, answer) in enumerate(pairs):
        turns.append({"from": "human", "value": ("<image>\n" if turn == 0 else "") + question})
        turns.append({"from": "gpt", "value": answer})
    return {
        "id": hashlib.sha256(f"{task}|{index}".encode()).hexdigest()[:16],
        "source": source,
        "task": task,
        "split": "test",
        "image_dataset": source,
        "image_path": image_path,
        "conversation": turns,
        "turns": len(turns),
        "template_id": None,
        "source_ids": [f"image:{task}-{index}"],
        "llm_cache_keys": [],
        "target_boxes": boxes,
        "target_labels": labels,
    }


def eval_rows(data_root: Path, storage_root: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    rows["report_generation"] = [
        _row(
            "report_generation",
            "mimic_cxr",
            i,
            [("Write the radiology report for this chest X-ray.", report)],
            data_root,
            storage_root,
        )
        for i, report in enumerate(REPORTS)
    ]
    rows["classification"] = [
        _row(
            "classification",
            "chexpert",
            i,
            [("Which abnormalities can you see on this chest X-ray?", answer)],
            data_root,
            storage_root,
            labels=labels,
        )
        for i, (answer, labels) in enumerate(CLASSIFICATION)
    ]
    for task, (source, items) in GROUNDING.items():
        rows[task] = [
            _row(
                task,
                source,
                i,
                [
                    (
                        f"Where is the {label} on this image?",
                        f"The {label} is located at {', '.join(format_box(b) for b in boxes)}.",
                    )
                ],
                data_root,
                storage_root,
                boxes=boxes,
                labels=[label] * len(boxes),
            )
            for i, (label, boxes) in enumerate(items)
        ]
    for task, dialogues in CONVERSATIONS.items():
        rows[task] = [
            _row(task, SOURCES[task], i, pairs, data_root, storage_root)
            | {"reference": CONVERSATION_REFERENCE}
            for i, pairs in enumerate(dialogues)
        ]
    return rows


def write_eval_sets(data_root: Path, storage_root: Path) -> dict[str, Path]:
    written = {}
    for task, rows in eval_rows(data_root, storage_root).items():
        path = StorageLayout(storage_root).corpus.eval_set(task)
        path.parent.mkdir(parents=True, exist_ok=True)
        conform(pl.DataFrame(rows, schema=CORPUS_SCHEMA), CORPUS_SCHEMA).write_parquet(path)
        written[task] = path
    return written


def build_fake_radgraph_xl(folder: Path) -> Path:
    """A RadGraph-XL folder with the real layout (config.json, vocabulary/, weights.th) and random weights
    on a tiny local BERT, so the radgraph package's real loading and scoring code runs offline.

    The model is built the way ``radgraph.RadGraph`` builds it and its state dict saved as the weights it
    loads. Returns the folder to configure as ``radgraph_dir`` (it holds ``radgraph-xl/``)."""
    import json
    import logging

    import pytest

    logger_class = logging.getLoggerClass()  # radgraph replaces it process-wide on import
    # The transformers 5 environment (.venv-tf5) has no radgraph: it breaks on transformers 5.
    pytest.importorskip("radgraph", reason="radgraph is not installed; it needs transformers < 5")
    import torch
    from dotmap import DotMap
    from radgraph.allennlp.data import Vocabulary
    from radgraph.allennlp.modules import text_field_embedders, token_embedders
    from radgraph.dygie.models import dygie
    from transformers import BertConfig, BertModel, BertTokenizerFast

    logging.setLoggerClass(logger_class)

    bert = folder / "tiny-bert"
    bert.mkdir(parents=True, exist_ok=True)
    words = (
        "the heart is normal no pleural effusion pneumothorax lungs are clear small left right lung base "
        "opacity mild edema cardiomegaly"
    ).split()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "0", "1", "2", "3"]
    (bert / "vocab.txt").write_text("\n".join(special + words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(bert / "vocab.txt"))
    tokenizer.save_pretrained(bert)
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    ).save_pretrained(bert)

    model_dir = folder / "radgraph-xl"
    vocabulary = model_dir / "vocabulary"
    vocabulary.mkdir(parents=True, exist_ok=True)
    (vocabulary / "non_padded_namespaces.txt").write_text("*tags\n*labels\n")
    entities = [
        "",
        "Anatomy::definitely present",
        "Observation::definitely present",
        "Observation::definitely absent",
    ]
    (vocabulary / "radgraph-xl__ner_labels.txt").write_text("\n".join(entities) + "\n")
    (vocabulary / "radgraph-xl__relation_labels.txt").write_text(
        "\n".join(["", "located_at", "suggestive_of", "modify"]) + "\n"
    )
    transformer = {"model_name": str(bert), "max_length": 128}
    config = {
        "dataset_reader": {"max_span_width": 4, "token_indexers": {"bert": transformer}},
        "vocabulary": {"padding_token": "@@PADDING@@", "oov_token": "@@UNKNOWN@@"},
        "model": {
            "type": "dygie",
            "embedder": {"token_embedders": {"bert": transformer}},
            "initializer": {},
            "module_initializer": {},
            "feature_size": 8,
            "max_span_width": 4,
            "target_task": "relation",
            "feedforward_params": {"num_layers": 1, "hidden_dims": 16, "dropout": 0.0},
            "loss_weights": {"ner": 1.0, "relation": 1.0, "coref": 0.0, "events": 0.0},
            "modules": {
                "ner": {},
                "relation": {"spans_per_word": 0.5},
                "coref": {"spans_per_word": 0.3, "max_antecedents": 10},
                "events": {
                    "trigger_spans_per_word": 0.3,
                    "argument_spans_per_word": 0.8,
                    "loss_weights": {"trigger": 1.0, "arguments": 1.0},
                },
            },
        },
    }
    (model_dir / "config.json").write_text(json.dumps(config))
    model_config = DotMap(config).model
    for name in ("type", "embedder", "initializer", "module_initializer"):
        del model_config[name]
    embedder = text_field_embedders.BasicTextFieldEmbedder(
        {"bert": token_embedders.PretrainedTransformerMismatchedEmbedder(**transformer)}
    )
    model = dygie.DyGIE(
        vocab=Vocabulary.from_files(str(vocabulary), "@@PADDING@@", "@@UNKNOWN@@"),
        embedder=embedder,
        **model_config,
    )
    torch.save(model.state_dict(), model_dir / "weights.th")
    return folder
