"""The canonical tables every source reader writes, one schema for all seven datasets.

Downstream stages (LLM stages, corpus, evaluation) only ever read these tables, never a dataset's
own layout, so supporting a new release means touching one reader.

Conventions
- ``source``: the dataset the row came from (a key of ``datasets.DATASETS``).
- ``dataset`` + ``path``: where the model-ready image lies; ``path`` is relative to the root named by
  ``dataset`` (a dataset folder, or a derived-image root under the storage root). Never absolute.
- ``original_path``: the released file the image came from, relative to the source dataset's root.
- ``width``/``height``: the original image's pixel size, the one its boxes are normalised by.
- Boxes: ``x1, y1, x2, y2`` normalised to [0, 1] by the original width/height and clipped; the
  source's own pixel coordinates kept beside them (null where the source is already normalised).
- Labels: the 14 CheXpert observations as nullable booleans: true = present, false = absent,
  null = not mentioned. Uncertain (-1.0) maps per the reader's policy (absent by default, the paper).
- Quarantine: one row per input row that did not make it into an output table, with the file
  (relative to the dataset root), the row (1-based record number: the first data row of a CSV after
  its header is row 1, a quoted multi-line field does not shift it; the n-th item of a JSON list or
  JSON-lines file is row n; a one-record file such as a report .txt is row 1), ``kind`` = ``filtered`` (a
  rule of the paper, such as lateral views) or ``invalid`` (bad input), and a reason a person can act on.
"""

from __future__ import annotations

import polars as pl

CHEXPERT_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)

SPLITS = ("train", "validate", "test")
VIEWS_FRONTAL = ("PA", "AP")

IMAGES_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "dataset": pl.String,
        "image_id": pl.String,
        "subject_id": pl.String,
        "study_id": pl.String,
        "split": pl.String,
        "path": pl.String,
        "original_path": pl.String,
        "width": pl.Int32,
        "height": pl.Int32,
        "view": pl.String,
        "sex": pl.String,  # "M", "F" or null
    }
)

REPORTS_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "study_id": pl.String,
        "subject_id": pl.String,
        "image_id": pl.String,  # set where a report belongs to one image (CheXpert-Plus); else null
        "split": pl.String,
        "report": pl.String,  # the text used downstream: findings, else impression, else last paragraph
        "findings": pl.String,
        "impression": pl.String,
        "path": pl.String,  # report file relative to the dataset root, or the CSV it came from
    }
)

LABELS_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "study_id": pl.String,
        "subject_id": pl.String,
        "image_id": pl.String,  # set where labels are given per image (CheXpert); else null
        "split": pl.String,
        **{name: pl.Boolean for name in CHEXPERT_LABELS},
    }
)

BOXES_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "image_id": pl.String,
        "box_id": pl.String,  # unique within the source
        "kind": pl.String,  # "region" (anatomy), "finding" (abnormality) or "phrase"
        "label": pl.String,  # region name, finding class or phrase text
        "category": pl.String,  # finding category where the source gives one (MS-CXR, PadChest-GR)
        "x1": pl.Float64,
        "y1": pl.Float64,
        "x2": pl.Float64,
        "y2": pl.Float64,
        "px_x1": pl.Float64,
        "px_y1": pl.Float64,
        "px_x2": pl.Float64,
        "px_y2": pl.Float64,
        "annotators": pl.Int32,  # how many annotators' boxes this box stands for (WBF), else 1
        "score": pl.Float64,  # fusion confidence (WBF), else 1.0
    }
)

QUARANTINE_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "file": pl.String,
        "row": pl.Int64,
        "kind": pl.String,  # "filtered" or "invalid"
        "reason": pl.String,  # short code, e.g. "lateral_view", "missing_image"
        "detail": pl.String,  # a sentence a person can act on
    }
)

ACCOUNTING_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "file": pl.String,
        "rows_in": pl.Int64,
        "rows_out": pl.Int64,
        "rows_filtered": pl.Int64,
        "rows_invalid": pl.Int64,
    }
)

TABLE_SCHEMAS: dict[str, pl.Schema] = {
    "images": IMAGES_SCHEMA,
    "reports": REPORTS_SCHEMA,
    "labels": LABELS_SCHEMA,
    "boxes": BOXES_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
    "accounting": ACCOUNTING_SCHEMA,
}


def conform(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Cast to the schema's columns in the schema's order; fail loudly on a missing column."""
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise ValueError(f"table is missing columns {missing}")
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def empty(schema: pl.Schema) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


# ---------------------------------------------------------------------------------------------------
# Tables between stages after the sources.

TASKS = (
    "report_generation",
    "classification",
    "anatomical_grounding",
    "abnormality_grounding",
    "abnormality_detection",
    "phrase_grounding",
    "conversation",
    "grounded_conversation",
)

TURN = pl.Struct({"from": pl.String, "value": pl.String})  # LLaVA convention: from = "human" | "gpt"

# Prior-study removal (LLM stage): one row per input report.
CLEAN_REPORTS_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "study_id": pl.String,
        "subject_id": pl.String,
        "image_id": pl.String,
        "split": pl.String,
        "report": pl.String,  # as the source gave it
        "report_clean": pl.String,  # null when nothing current is left ("None") or the call failed
        "status": pl.String,  # "ok", "nothing_left" or "failed"
        "cache_key": pl.String,
        "backend": pl.String,  # e.g. "offline-rules" or "openai:gpt-4o-mini"
    }
)

# What an LLM-written conversation was written from, as the writer was given it (one text per fact; the
# boxes as "phrase: [x1, y1, x2, y2]; ..."). The conversation judge gets the same reference data.
CONVERSATION_FACTS = pl.Struct(
    {
        "report": pl.String,
        "abnormalities": pl.String,
        "view": pl.String,
        "sex": pl.String,
        "observations": pl.String,
    }
)

# Conversation synthesis (LLM stage): one row per image that got a valid conversation.
CONVERSATIONS_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "image_id": pl.String,
        "study_id": pl.String,
        "split": pl.String,
        "kind": pl.String,  # "standard" or "grounded"
        "conversation": pl.List(TURN),
        "facts": CONVERSATION_FACTS,
        "cache_key": pl.String,
        "backend": pl.String,
    }
)

# Instruction corpus shards and evaluation sets: one schema for every task.
CORPUS_SCHEMA = pl.Schema(
    {
        "id": pl.String,  # stable: derived from task, source, source row ids and repetition index
        "source": pl.String,
        "task": pl.String,  # one of TASKS
        "split": pl.String,
        "image_dataset": pl.String,  # root the image path is relative to (datasets.image_root)
        "image_path": pl.String,
        "conversation": pl.List(TURN),  # first human turn starts with "<image>\n"
        "turns": pl.Int32,
        "template_id": pl.String,  # null for LLM conversations
        "source_ids": pl.List(pl.String),  # lineage: image/study/box ids the row was built from
        "llm_cache_keys": pl.List(pl.String),  # lineage: cache keys of the LLM outputs used
        "target_boxes": pl.List(pl.Array(pl.Float64, 4)),  # grounding targets (normalised), else null
        "target_labels": pl.List(pl.String),  # classification/detection targets, else null
        "reference": CONVERSATION_FACTS,  # LLM conversations: the facts they were written from, else null
    }
)
