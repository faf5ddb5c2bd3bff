"""Score one model's stored answers on one task: the function each evaluation asset partition calls.

The outcome is always written, whatever happened: scored metrics, or the reason there is nothing to
score (the model is not available, it is not evaluated on this task, generation has not run). The
results tables read these files only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from radvlm_pipeline.evaluation import classification, conversation, grounding, report_generation
from radvlm_pipeline.evaluation.generation import (
    CONVERSATION_TASKS,
    GROUNDING_TASKS,
    read_eval_set,
    read_generation_outcome,
    reference_answers,
    split_turns,
)
from radvlm_pipeline.evaluation.metric import MetricValue, TextCompleter, percent
from radvlm_pipeline.layout import StorageLayout

MAP_PAPER = "mAP@0.5"
COCO_AP50 = "COCO AP50"
ACC_05 = "Acc@0.5"
MEAN_IOU = "mean IoU"
MACRO_F1 = "Macro-F1"
MACRO_F1_PRESENT = "Macro-F1 (labels present)"
MICRO_F1 = "Micro-F1"
MACRO_F1_SUBSTRING = "Macro-F1 (substring, paper code)"


@dataclass(frozen=True)
class ScoringSettings:
    report: report_generation.ReportMetricSettings = report_generation.ReportMetricSettings()
    llm: TextCompleter | None = None  # for GREEN and the conversation judge
    llm_unavailable_reason: str = "no LLM endpoint configured for GREEN and the judge"


@dataclass
class TaskEvaluation:
    task: str
    model: str
    status: str  # "scored", "not_available", "not_evaluated" or "no_answers"
    reason: str | None = None
    samples: int = 0
    metrics: list[MetricValue] = field(default_factory=list)
    per_sample: pl.DataFrame | None = None

    def metric(self, name: str) -> MetricValue | None:
        return next((metric for metric in self.metrics if metric.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "model": self.model,
            "status": self.status,
            "reason": self.reason,
            "samples": self.samples,
            "metrics": [metric.to_json() for metric in self.metrics],
        }

    def write(self, storage_root: Path) -> Path:
        layout = StorageLayout(storage_root)
        path = layout.metrics(self.task, self.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        sample_path = layout.metric_samples(self.task, self.model)
        if self.per_sample is not None:
            self.per_sample.write_parquet(sample_path, compression="zstd")
        else:
            sample_path.unlink(missing_ok=True)
        return path


def read_task_evaluation(storage_root: Path, task: str, model: str) -> TaskEvaluation | None:
    layout = StorageLayout(storage_root)
    path = layout.metrics(task, model)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    sample_path = layout.metric_samples(task, model)
    return TaskEvaluation(
        task=data["task"],
        model=data["model"],
        status=data["status"],
        reason=data.get("reason"),
        samples=data.get("samples", 0),
        metrics=[MetricValue.from_json(m) for m in data["metrics"]],
        per_sample=pl.read_parquet(sample_path) if sample_path.is_file() else None,
    )


def _last_answers(answers: pl.DataFrame) -> list[str]:
    return [texts[-1] if texts else "" for texts in answers["answers"].to_list()]


def score_report_generation(eval_set, answers, settings: ScoringSettings):
    references, hypotheses = reference_answers(eval_set), _last_answers(answers)
    rouge, rouge_scores = report_generation.rouge_l(references, hypotheses)
    bert, bert_scores = report_generation.bertscore(references, hypotheses, settings.report)
    radgraph, radgraph_scores = report_generation.radgraph_partial_f1(references, hypotheses, settings.report)
    green, green_scores, green_replies = report_generation.green(
        references, hypotheses, eval_set["source"].to_list(), settings.llm, settings.llm_unavailable_reason
    )
    columns = {
        "rouge_l": rouge_scores,
        "bertscore": bert_scores,
        "radgraph_partial": radgraph_scores,
        "green": green_scores,
    }
    per_sample = pl.DataFrame({"id": answers["id"], "answer": hypotheses, "reference": references})
    per_sample = per_sample.with_columns(
        [pl.Series(name, values, dtype=pl.Float64) for name, values in columns.items() if values is not None]
    )
    if green_replies:
        per_sample = per_sample.with_columns(pl.Series("green_reply", green_replies, dtype=pl.String))
    return [bert, rouge, radgraph, green], per_sample


def _per_label(scores: classification.ClassificationScores) -> dict[str, float]:
    return {label: round(percent(value), 4) for label, value in zip(scores.labels, scores.f1)}


def score_classification(eval_set, answers, settings: ScoringSettings):
    hypotheses = _last_answers(answers)
    truth = eval_set["target_labels"].to_list()
    keyword, substring, extracted = classification.score_classification(hypotheses, truth)
    support = {label: int(count) for label, count in zip(keyword.labels, keyword.support)}
    present = (
        MetricValue.computed(MACRO_F1_PRESENT, percent(keyword.macro_f1_supported))
        if keyword.macro_f1_supported is not None
        else MetricValue.not_computed(MACRO_F1_PRESENT, "no label occurs in the evaluation set")
    )
    metrics = [
        MetricValue.computed(
            MACRO_F1,
            percent(keyword.macro_f1),
            method="keywords+negation",
            per_label_f1=_per_label(keyword),
            support=support,
        ),
        present,
        MetricValue.computed(MICRO_F1, percent(keyword.micro_f1)),
        MetricValue.computed(
            MACRO_F1_SUBSTRING,
            percent(substring.macro_f1),
            method="substring",
            per_label_f1=_per_label(substring),
        ),
    ]
    per_sample = pl.DataFrame(
        {
            "id": answers["id"],
            "answer": hypotheses,
            "truth": [sorted(labels or []) for labels in truth],
            "predicted": [sorted(labels) for labels in extracted],
        },
        schema={
            "id": pl.String,
            "answer": pl.String,
            "truth": pl.List(pl.String),
            "predicted": pl.List(pl.String),
        },
    )
    return metrics, per_sample


def score_grounding(eval_set, answers, settings: ScoringSettings):
    hypotheses = _last_answers(answers)
    truth = [[list(box) for box in boxes or []] for boxes in eval_set["target_boxes"].to_list()]
    scores = grounding.score_grounding(hypotheses, truth)
    coco = (
        MetricValue.computed(COCO_AP50, percent(scores.coco_ap50), confidence="answer order")
        if scores.coco_ap50 is not None
        else MetricValue.not_computed(COCO_AP50, "the evaluation set has no ground-truth box")
    )
    metrics = [
        MetricValue.computed(
            MAP_PAPER, percent(scores.paper_map), definition="per-sample AP, answer order as confidence"
        ),
        coco,
        MetricValue.computed(ACC_05, percent(scores.accuracy_at_05), definition="first box IoU >= 0.5"),
        MetricValue.computed(MEAN_IOU, percent(scores.mean_iou), definition="first box, best IoU"),
    ]
    per_sample = pl.DataFrame(
        {
            "id": answers["id"],
            "answer": hypotheses,
            "predicted_boxes": scores.predicted_counts.astype("int64"),
            "average_precision": scores.per_sample_ap,
            "first_box_iou": scores.first_box_iou,
        }
    )
    return metrics, per_sample


def score_conversation(eval_set, answers, settings: ScoringSettings):
    dialogues = []
    for row_conversation, generated in zip(eval_set["conversation"].to_list(), answers["answers"].to_list()):
        questions, expected = split_turns(row_conversation)
        dialogues.append([conversation.Round(q, e, g) for q, e, g in zip(questions, expected, generated)])
    judge, scores, replies = conversation.judge_conversations(
        dialogues,
        eval_set["reference"].to_list(),
        eval_set["source"].to_list(),
        settings.llm,
        settings.llm_unavailable_reason,
    )
    per_sample = pl.DataFrame({"id": answers["id"], "rounds": [len(d) for d in dialogues]})
    if scores is not None:
        per_sample = per_sample.with_columns(
            pl.Series("judge_score", scores, dtype=pl.Float64),
            pl.Series("judge_reply", replies, dtype=pl.String),
        )
    return [judge], per_sample


SCORERS = {
    "report_generation": score_report_generation,
    "classification": score_classification,
    **{task: score_grounding for task in GROUNDING_TASKS},
    **{task: score_conversation for task in CONVERSATION_TASKS},
}


def evaluate(storage_root: Path, task: str, model: str, settings: ScoringSettings) -> TaskEvaluation:
    """Score the stored answers of ``model`` on ``task`` (or record why there are none) and write it."""
    evaluation = _evaluate(storage_root, task, model, settings)
    evaluation.write(storage_root)
    return evaluation


def _evaluate(storage_root: Path, task: str, model: str, settings: ScoringSettings) -> TaskEvaluation:
    outcome = read_generation_outcome(storage_root, model)
    if outcome is None:
        return TaskEvaluation(
            task, model, "no_answers", f"no answers of {model}: materialize its generation first"
        )
    if outcome.status == "not_available":
        return TaskEvaluation(task, model, "not_available", outcome.reason)
    task_outcome = outcome.tasks.get(task, {})
    if task_outcome.get("status") != "generated":
        status = "not_evaluated" if task_outcome.get("status") == "not_evaluated" else "no_answers"
        return TaskEvaluation(
            task, model, status, task_outcome.get("reason") or f"no answers of {model} for {task}"
        )
    answers = pl.read_parquet(StorageLayout(storage_root).answers(model, task))
    eval_set = read_eval_set(storage_root, task)
    by_id = answers.select("id").join(eval_set, on="id", how="left", maintain_order="left")
    if by_id["conversation"].null_count():
        raise ValueError(
            f"answers of {model} for {task} name ids absent from the evaluation set: regenerate them"
        )
    metrics, per_sample = SCORERS[task](by_id, answers, settings)
    return TaskEvaluation(
        task, model, "scored", samples=answers.height, metrics=metrics, per_sample=per_sample
    )
