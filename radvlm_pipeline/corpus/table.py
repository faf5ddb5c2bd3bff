"""The paper's Table 1 as configuration: which task is built from which source, how often, up to how many.

Each ``TableRow`` is one partition of the corpus asset (``<task>__<source>``). Small sources are repeated
(each repetition draws its own phrasing, and region where there is a choice) to balance them against the
big ones; Chest ImaGenome is capped. Evaluation sets are drawn from test splits only.

Rows train on the train split, except phrase grounding (MS-CXR, PadChest-GR) and PadChest-GR grounded
conversations, which train on train and validate as the paper's code does: these sources are small and
the pipeline selects no checkpoint on a validation split, so the validate images would otherwise go unused.
No row may train on a test split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from radvlm_pipeline.schema import TASKS

TRAINING_SPLITS = ("train", "validate")  # every canonical split but "test"
PAPER_TRAIN_AND_VALIDATE = ("train", "validate")


@dataclass(frozen=True)
class TableRow:
    task: str
    source: str
    repeat: int = 1
    cap: int | None = None  # most samples kept before repetition (deterministic subsample by hash)
    splits: tuple[str, ...] = ("train",)  # the splits trained on

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}")
        if self.repeat < 1 or (self.cap is not None and self.cap < 0):
            raise ValueError(f"{self.key}: repeat must be >= 1 and cap >= 0")
        unknown = set(self.splits) - set(TRAINING_SPLITS)
        if unknown or not self.splits:
            raise ValueError(
                f"{self.key}: splits {list(self.splits)} must be some of {list(TRAINING_SPLITS)}; "
                "the test split is held out for evaluation"
            )

    @property
    def key(self) -> str:
        return f"{self.task}__{self.source}"


@dataclass(frozen=True)
class EvalSet:
    task: str
    source: str
    cap: int | None = None

    @property
    def key(self) -> str:
        return f"eval__{self.task}"


TABLE_1: tuple[TableRow, ...] = (
    TableRow("report_generation", "mimic_cxr"),
    TableRow("report_generation", "chexpert_plus"),
    TableRow("classification", "mimic_cxr"),
    TableRow("classification", "chexpert"),
    TableRow("anatomical_grounding", "chest_imagenome", cap=80_000),
    TableRow("abnormality_grounding", "vindr_cxr", repeat=3),
    TableRow("abnormality_detection", "vindr_cxr", repeat=2),
    TableRow("phrase_grounding", "ms_cxr", repeat=3, splits=PAPER_TRAIN_AND_VALIDATE),
    TableRow("phrase_grounding", "padchest_gr", repeat=2, splits=PAPER_TRAIN_AND_VALIDATE),
    TableRow("conversation", "mimic_cxr"),
    TableRow("grounded_conversation", "ms_cxr", repeat=4),
    TableRow("grounded_conversation", "padchest_gr", repeat=4, splits=PAPER_TRAIN_AND_VALIDATE),
)

# The paper's held-out sets (Table 1, right column). Anatomical grounding samples 2,000 test images.
EVAL_SETS: tuple[EvalSet, ...] = (
    EvalSet("report_generation", "mimic_cxr"),
    EvalSet("classification", "chexpert"),
    EvalSet("anatomical_grounding", "chest_imagenome", cap=2_000),
    EvalSet("abnormality_grounding", "vindr_cxr"),
    EvalSet("phrase_grounding", "ms_cxr"),
    EvalSet("conversation", "mimic_cxr"),
    EvalSet("grounded_conversation", "ms_cxr"),
)

# Datasets whose patient ids name the same people: a patient held out in one is held out in all.
PATIENT_NAMESPACE = {
    "mimic_cxr": "mimic",
    "chest_imagenome": "mimic",
    "ms_cxr": "mimic",
    "chexpert": "chexpert",
    "chexpert_plus": "chexpert",
    "vindr_cxr": "vindr",
    "padchest_gr": "padchest",
}


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = 0
    rows: tuple[TableRow, ...] = TABLE_1
    eval_sets: tuple[EvalSet, ...] = EVAL_SETS
    rows_per_shard: int = 100_000
    zstd_level: int = 3

    def row(self, key: str) -> TableRow:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(f"no Table 1 row {key!r}; known: {[r.key for r in self.rows]}")

    def with_overrides(
        self,
        repeat: dict[str, int] | None = None,
        cap: dict[str, int] | None = None,
        splits: dict[str, Sequence[str]] | None = None,
    ) -> CorpusConfig:
        """Change repetition factors, caps or training splits of some rows (keyed like partitions)."""
        repeat, cap, splits = repeat or {}, cap or {}, splits or {}
        unknown = (set(repeat) | set(cap) | set(splits)) - {r.key for r in self.rows}
        if unknown:
            raise KeyError(f"overrides name unknown Table 1 rows: {sorted(unknown)}")
        rows = tuple(
            replace(
                r,
                repeat=repeat.get(r.key, r.repeat),
                cap=cap.get(r.key, r.cap),
                splits=tuple(splits.get(r.key, r.splits)),
            )
            for r in self.rows
        )
        return replace(self, rows=rows)

    def fingerprint(self) -> str:
        """Same config, same fingerprint: recorded beside every shard so a mixed corpus is visible."""
        payload = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def partition_keys(config: CorpusConfig = CorpusConfig()) -> list[str]:
    return [row.key for row in config.rows]
