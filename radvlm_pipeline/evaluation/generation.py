"""Greedy answers of one model over the evaluation sets, stored as Parquet.

Answers are written once and every metric reads them back, so a metric can be fixed or added without
generating again. Multi-turn conversations are asked round by round with the model's own earlier answers
as history, as in the paper. Within a round, the rows of every evaluation set the model answers are
batched together (a set of 30 single-turn rows alone would leave most of a batch empty), and greedy
decoding of a batch stops once every row has ended its answer. The model is anything a
``ModelAdapter`` can load from a local path (``adapters.py``): a fine-tuned partition, the base model,
a baseline, or the oracle that answers with the ground truth.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from radvlm_pipeline.evaluation.model_loading import BaselineUnavailable
from radvlm_pipeline.layout import DERIVED_IMAGE_ROOTS, StorageLayout, image_root
from radvlm_pipeline.schema import CORPUS_SCHEMA, TASKS
from radvlm_pipeline.torch_threads import one_cpu_thread

# The evaluation sets the paper scores: every task but abnormality detection, which has no comparable
# model (section 4.1.3).
EVALUATED_TASKS = tuple(task for task in TASKS if task != "abnormality_detection")
GROUNDING_TASKS = ("anatomical_grounding", "abnormality_grounding", "phrase_grounding")
CONVERSATION_TASKS = ("conversation", "grounded_conversation")
IMAGE_PLACEHOLDER = "<image>\n"

ANSWERS_SCHEMA = pl.Schema(
    {
        "id": pl.String,  # the evaluation-set row
        "task": pl.String,
        "model": pl.String,
        "answers": pl.List(pl.String),  # one per assistant turn, in the project's text conventions
        "raw_answers": pl.List(pl.String),  # the model's own text (e.g. CheXagent's <|box|> grid)
    }
)


def read_eval_set(storage_root: Path, task: str, max_samples: int | None = None) -> pl.DataFrame:
    """The task's evaluation set, sorted by id; ``max_samples`` keeps the first rows (a demo budget)."""
    frame = pl.read_parquet(StorageLayout(storage_root).corpus.eval_set(task)).sort("id")
    missing = [name for name in CORPUS_SCHEMA if name not in frame.columns]
    if missing:
        raise ValueError(f"evaluation set {task} lacks columns {missing}")
    return frame.head(max_samples) if max_samples is not None else frame


def split_turns(conversation: Sequence[dict]) -> tuple[list[str], list[str]]:
    """(questions, reference answers) of a corpus conversation; the image placeholder is removed."""
    questions = [turn["value"] for turn in conversation if turn["from"] == "human"]
    references = [turn["value"] for turn in conversation if turn["from"] == "gpt"]
    if len(questions) != len(references) or not questions:
        raise ValueError("a conversation needs alternating human/gpt turns")
    if questions[0].startswith(IMAGE_PLACEHOLDER):
        questions[0] = questions[0][len(IMAGE_PLACEHOLDER) :]
    return questions, references


def reference_answers(frame: pl.DataFrame) -> list[str]:
    """The last assistant turn of each row: the reference answer of a single-turn task."""
    return [split_turns(conversation)[1][-1] for conversation in frame["conversation"].to_list()]


@dataclass(frozen=True)
class Request:
    """One question to a model about one image, with the conversation so far."""

    task: str
    image_path: Path
    question: str
    history: tuple[tuple[str, str], ...] = ()  # (question, the model's own answer) of earlier rounds
    target_label: str | None = None  # the region/finding/phrase asked about, for models that want it alone
    reference: str | None = None  # the expected answer: only the oracle looks at it
    datasets: tuple[str, ...] = ()  # whose text and image the request carries: governs where it may go


class AnswerGenerator(Protocol):
    def answer(self, requests: Sequence[Request]) -> list[str]:
        """The model's raw text for each request, in order (greedy decoding)."""


def _target_label(row: dict) -> str | None:
    """The one region/finding/phrase a grounding row asks about (its labels repeat it once per box)."""
    if row["task"] not in GROUNDING_TASKS:
        return None
    labels = set(row.get("target_labels") or [])
    return labels.pop() if len(labels) == 1 else None


def _datasets(row: dict) -> tuple[str, ...]:
    """The row's dataset and its image's; an image the pipeline converted (VinDr-CXR's PNGs) is its row's."""
    image = row["image_dataset"]
    return tuple(sorted({row["source"], *([image] if image not in DERIVED_IMAGE_ROOTS else [])}))


def generate_answers(
    frame: pl.DataFrame,
    generator: AnswerGenerator,
    to_answer: Callable[[str, str, Path], str],
    resolve_image: Callable[[str, str], Path],
    model: str,
    batch_size: int = 8,
) -> pl.DataFrame:
    """Answers of ``generator`` to every row of an evaluation set (ANSWERS_SCHEMA).

    ``to_answer(task, raw_text, image_path)`` turns a model's own output convention into the project's
    (boxes as ``[x1, y1, x2, y2]``); ``resolve_image(image_dataset, image_path)`` finds the image file.
    """
    rows = frame.to_dicts()
    turns = [split_turns(row["conversation"]) for row in rows]
    images = [resolve_image(row["image_dataset"], row["image_path"]) for row in rows]
    raw: list[list[str]] = [[] for _ in rows]
    rounds = max((len(questions) for questions, _ in turns), default=0)
    for round_index in range(rounds):
        active = [i for i, (questions, _) in enumerate(turns) if len(questions) > round_index]
        for start in range(0, len(active), batch_size):
            batch = active[start : start + batch_size]
            requests = [
                Request(
                    task=rows[i]["task"],
                    image_path=images[i],
                    question=turns[i][0][round_index],
                    history=tuple(zip(turns[i][0][:round_index], raw[i])),
                    target_label=_target_label(rows[i]),
                    reference=turns[i][1][round_index],
                    datasets=_datasets(rows[i]),
                )
                for i in batch
            ]
            for i, text in zip(batch, generator.answer(requests)):
                raw[i].append(text)
    return pl.DataFrame(
        {
            "id": [row["id"] for row in rows],
            "task": [row["task"] for row in rows],
            "model": [model] * len(rows),
            "answers": [
                [to_answer(row["task"], text, image) for text in texts]
                for row, texts, image in zip(rows, raw, images)
            ],
            "raw_answers": raw,
        },
        schema=ANSWERS_SCHEMA,
    )


def image_resolver(data_root: Path, storage_root: Path) -> Callable[[str, str], Path]:
    def resolve(dataset: str, relative_path: str) -> Path:
        return image_root(dataset, data_root, storage_root) / relative_path

    return resolve


@dataclass
class GenerationOutcome:
    """What a generation run did for one model: per task, answers written or why not."""

    model: str
    status: str  # "generated" or "not_available"
    reason: str | None = None
    model_path: str | None = None
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float | None = None  # answering every set, all batched together

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "status": self.status,
            "reason": self.reason,
            "model_path": self.model_path,
            "tasks": self.tasks,
            "seconds": self.seconds,
        }

    def write(self, storage_root: Path) -> Path:
        path = StorageLayout(storage_root).generation_record(self.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path


def read_generation_outcome(storage_root: Path, model: str) -> GenerationOutcome | None:
    path = StorageLayout(storage_root).generation_record(model)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return GenerationOutcome(
        data["model"],
        data["status"],
        data.get("reason"),
        data.get("model_path"),
        data.get("tasks") or {},
        data.get("seconds"),
    )


def record_unavailable(
    adapter, model_path: Path | None, reason: str, storage_root: Path
) -> GenerationOutcome:
    outcome = GenerationOutcome(
        adapter.name, "not_available", reason, str(model_path) if model_path else None
    )
    outcome.write(storage_root)
    return outcome


def run_generation(
    adapter,
    model_path: Path | None,
    storage_root: Path,
    data_root: Path,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    max_samples: int | None = None,
    device: str | None = None,
    log: Callable[[str], None] = print,
    generator: AnswerGenerator | None = None,
) -> GenerationOutcome:
    """Answer every evaluation set the model is evaluated on and record the outcome beside the answers.

    A model whose weights are not on disk is recorded as not available (with the reason) rather than
    failing, so the results tables show the gap instead of a number. ``generator`` answers instead of
    the adapter's model loaded here (a serving engine, ``served_answers.py``).
    """
    try:
        generator = generator or adapter.load(model_path, device=device, max_new_tokens=max_new_tokens)
    except BaselineUnavailable as exc:
        return record_unavailable(adapter, model_path, str(exc), storage_root)
    outcome = GenerationOutcome(adapter.name, "generated", model_path=str(model_path) if model_path else None)
    layout = StorageLayout(storage_root)
    answered = []
    for task in EVALUATED_TASKS:
        if task not in adapter.tasks:
            outcome.tasks[task] = {
                "status": "not_evaluated",
                "reason": f"{adapter.title} is not evaluated on {task}",
            }
        elif not layout.corpus.eval_set(task).is_file():
            outcome.tasks[task] = {
                "status": "no_eval_set",
                "reason": f"{layout.corpus.eval_set(task)} missing",
            }
        else:
            answered.append(task)
    if answered:
        frame = pl.concat([read_eval_set(storage_root, task, max_samples) for task in answered])
        started = time.perf_counter()
        with one_cpu_thread(device):
            answers = generate_answers(
                frame,
                generator,
                adapter.to_answer,
                image_resolver(data_root, storage_root),
                adapter.name,
                batch_size,
            )
        outcome.seconds = round(time.perf_counter() - started, 3)
        for task in answered:
            task_answers = answers.filter(pl.col("task") == task)
            target = layout.answers(adapter.name, task)
            target.parent.mkdir(parents=True, exist_ok=True)
            task_answers.write_parquet(target, compression="zstd")
            outcome.tasks[task] = {
                "status": "generated",
                "rows": task_answers.height,
                "path": str(target),
                "rounds": int(task_answers["answers"].list.len().max() or 0),
            }
        log(f"{adapter.name}: {answers.height} answers to {len(answered)} sets in {outcome.seconds:.1f}s")
    outcome.write(storage_root)
    return outcome
