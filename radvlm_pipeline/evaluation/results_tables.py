"""The paper's Tables 3-6 rebuilt from the stored evaluations, our numbers beside theirs.

A cell shows our number, "not computed" or "not available"; the reason behind every such cell is listed
under its table, so a missing model or endpoint is never mistaken for a score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from radvlm_pipeline.evaluation.baselines import BASE_MODEL, model_adapters
from radvlm_pipeline.evaluation.conversation import JUDGE_SCORE
from radvlm_pipeline.evaluation.generation import GROUNDING_TASKS
from radvlm_pipeline.evaluation.paper_numbers import (
    PAPER_CLASSIFICATION_MACRO_F1,
    PAPER_TABLE_3,
    PAPER_TABLE_4,
    PAPER_TABLE_5,
    PAPER_TABLE_6,
)
from radvlm_pipeline.evaluation.report_generation import BERTSCORE, GREEN, PAPER_BERTSCORE, RADGRAPH, ROUGE_L
from radvlm_pipeline.evaluation.scoring import (
    ACC_05,
    COCO_AP50,
    MACRO_F1,
    MACRO_F1_PRESENT,
    MACRO_F1_SUBSTRING,
    MAP_PAPER,
    MEAN_IOU,
    TaskEvaluation,
    read_task_evaluation,
)
from radvlm_pipeline.markdown import markdown_table


@dataclass(frozen=True)
class Column:
    title: str
    task: str
    metric: str
    paper: dict[str, float]  # model -> the paper's value
    digits: int = 1


def _paper(table: dict[str, tuple[float, ...]], index: int) -> dict[str, float]:
    return {model: values[index] for model, values in table.items()}


TABLE_3 = [
    Column(BERTSCORE, "report_generation", BERTSCORE, _paper(PAPER_TABLE_3, 0)),
    Column(ROUGE_L, "report_generation", ROUGE_L, _paper(PAPER_TABLE_3, 1)),
    Column(RADGRAPH, "report_generation", RADGRAPH, _paper(PAPER_TABLE_3, 2)),
    Column(GREEN, "report_generation", GREEN, _paper(PAPER_TABLE_3, 3)),
]
CLASSIFICATION_TABLE = [
    Column(MACRO_F1, "classification", MACRO_F1, PAPER_CLASSIFICATION_MACRO_F1),
    Column(MACRO_F1_SUBSTRING, "classification", MACRO_F1_SUBSTRING, {}),
    Column(MACRO_F1_PRESENT, "classification", MACRO_F1_PRESENT, {}),
]
TABLE_4 = [
    Column(
        f"{task.split('_')[0].capitalize()} grounding {MAP_PAPER}",
        task,
        MAP_PAPER,
        _paper(PAPER_TABLE_4, index),
    )
    for index, task in enumerate(GROUNDING_TASKS)
]
GROUNDING_DETAIL = [
    Column(f"{task.split('_')[0].capitalize()} {metric}", task, metric, {})
    for task in GROUNDING_TASKS
    for metric in (COCO_AP50, ACC_05, MEAN_IOU)
]
TABLE_5 = [
    Column("Judge score", "conversation", JUDGE_SCORE, _paper(PAPER_TABLE_5, 0), digits=2),
    Column("Judge score, grounded", "grounded_conversation", JUDGE_SCORE, _paper(PAPER_TABLE_5, 1), digits=2),
]


def _ablation(title: str) -> dict[str, float]:
    return {model: values[title] for model, values in PAPER_TABLE_6.items() if title in values}


TABLE_6 = [
    Column(title, task, metric, _ablation(title), digits)
    for title, task, metric, digits in (
        ("RadGraph F1", "report_generation", RADGRAPH, 1),
        ("GREEN", "report_generation", GREEN, 1),
        ("Macro-F1", "classification", MACRO_F1, 1),
        ("Anatomical mAP", "anatomical_grounding", MAP_PAPER, 1),
        ("Abnormality mAP", "abnormality_grounding", MAP_PAPER, 1),
        ("Phrase mAP", "phrase_grounding", MAP_PAPER, 1),
        ("Judge", "conversation", JUDGE_SCORE, 2),
        ("Judge (grounded)", "grounded_conversation", JUDGE_SCORE, 2),
    )
]


# The one number per task a summary shows (the demo's closing table, the learning test): the paper's
# headline metric of each task.
HEADLINE_METRICS = {
    "report_generation": ROUGE_L,
    "classification": MACRO_F1,
    **{task: MAP_PAPER for task in GROUNDING_TASKS},
    "conversation": JUDGE_SCORE,
    "grounded_conversation": JUDGE_SCORE,
}


def headline(storage_root: Path, task: str, model: str) -> tuple[float | None, str]:
    """(value, how to show it) of the task's headline metric for the model: the value is None with a
    short reason ("not computed", "not evaluated", ...) where there is no number."""
    evaluation = read_task_evaluation(storage_root, task, model)
    if evaluation is None:
        return None, "not run"
    if evaluation.status != "scored":
        return None, evaluation.status.replace("_", " ")
    metric = evaluation.metric(HEADLINE_METRICS[task])
    if metric is None or not metric.is_computed:
        return None, "not computed"
    return metric.value, metric.display(2 if HEADLINE_METRICS[task] == JUDGE_SCORE else 1)


class Evaluations:
    """Every stored evaluation, looked up by (task, model)."""

    def __init__(self, storage_root: Path, models: Sequence[str], tasks: Sequence[str]):
        self.storage_root = storage_root
        self.by_key = {
            (task, model): read_task_evaluation(storage_root, task, model)
            for task in tasks
            for model in models
        }

    def get(self, task: str, model: str) -> TaskEvaluation | None:
        return self.by_key.get((task, model))


def _cell(evaluation: TaskEvaluation | None, column: Column, notes: dict[str, int]) -> str:
    def note(text: str) -> str:
        number = notes.setdefault(text, len(notes) + 1)
        return f"[{number}]"

    if evaluation is None:
        return "not run"
    if evaluation.status == "not_available":
        return f"not available {note(str(evaluation.reason))}"
    if evaluation.status != "scored":
        return f"{evaluation.status.replace('_', ' ')} {note(f'{evaluation.model} / {evaluation.task}: {evaluation.reason}')}"
    metric = evaluation.metric(column.metric)
    if metric is None:
        return "-"
    if not metric.is_computed:
        return f"not computed {note(f'{column.metric}: {metric.reason}')}"
    return metric.display(column.digits)


def render_table(
    title: str, columns: Sequence[Column], models: Sequence[str], evaluations: Evaluations, caption: str = ""
) -> str:
    """A Markdown table: one row per model, "ours | paper" per column (ours alone where the paper has no
    number); the reasons behind "not computed" / "not available" cells are listed underneath.

    A model is listed when it was evaluated on at least one of the columns' tasks or the paper reports it.
    """
    adapters = model_adapters()
    rows = [
        model
        for model in models
        if any(column.task in adapters[model].tasks for column in columns)
        or any(model in c.paper for c in columns)
    ]
    notes: dict[str, int] = {}
    titles = [
        title
        for c in columns
        for title in ([f"{c.title} (ours)", f"{c.title} (paper)"] if c.paper else [c.title])
    ]
    body = []
    for model in rows:
        cells = [adapters[model].title]
        for column in columns:
            applies = column.task in adapters[model].tasks
            cells.append(_cell(evaluations.get(column.task, model), column, notes) if applies else "-")
            if column.paper:
                paper = column.paper.get(model)
                cells.append(f"{paper:.{column.digits}f}" if paper is not None else "-")
        body.append(cells)
    table = markdown_table(["Model", *titles], body)
    lines = [f"### {title}", ""] + ([caption, ""] if caption else []) + [table]
    if notes:
        lines += [""] + [f"[{number}] {text}" for text, number in notes.items()]
    return "\n".join(lines) + "\n"


def render_tables(storage_root: Path, models: Sequence[str] | None = None) -> str:
    adapters = model_adapters()
    models = list(models or adapters)
    tasks = sorted(
        {
            c.task
            for table in (TABLE_3, CLASSIFICATION_TABLE, TABLE_4, GROUNDING_DETAIL, TABLE_5, TABLE_6)
            for c in table
        }
    )
    evaluations = Evaluations(storage_root, models, tasks)
    baselines_and_all = [m for m in models if m == "all" or m not in _recipes()]
    # Table 6 starts with the base model the recipes were fine-tuned from: what each recipe gained.
    recipes = [m for m in models if m == BASE_MODEL] + [m for m in models if m in _recipes()]
    bertscore_note = _bertscore_note(evaluations, models)
    return "\n".join(
        [
            "# RadVLM evaluation: our numbers beside the paper's",
            "",
            render_table(
                "Table 3: report generation (%)", TABLE_3, baselines_and_all, evaluations, bertscore_note
            ),
            render_table(
                "Abnormality classification (%), Figure 4 / Table 6",
                CLASSIFICATION_TABLE,
                baselines_and_all,
                evaluations,
                "Keyword matching with negation; the paper's code matched label names as "
                "substrings (second column). The paper gives per-label F1 only as a bar chart.",
            ),
            render_table(
                "Table 4: visual grounding, mAP at IoU 0.5 (%)",
                TABLE_4,
                baselines_and_all,
                evaluations,
                "mAP as the paper's code defines it: per-sample AP with answer order as confidence.",
            ),
            render_table("Grounding, further metrics (%)", GROUNDING_DETAIL, baselines_and_all, evaluations),
            render_table(
                "Table 5: conversations, LLM-judge score (0-10)",
                TABLE_5,
                baselines_and_all,
                evaluations,
                "The paper's judge was GPT-4o; ours is the configured endpoint.",
            ),
            render_table(
                "Table 6: single-task ablations",
                TABLE_6,
                recipes,
                evaluations,
                "Each recipe is evaluated on the tasks it was trained on; the base model it started from, "
                "on every task.",
            ),
        ]
    )


def _recipes() -> set[str]:
    from radvlm_pipeline.training.recipes import RECIPES

    return set(RECIPES)


def _bertscore_note(evaluations: Evaluations, models: Sequence[str]) -> str:
    for model in models:
        evaluation = evaluations.get("report_generation", model)
        metric = evaluation.metric(BERTSCORE) if evaluation else None
        if metric is not None and metric.is_computed:
            if metric.details.get("comparable_with_paper"):
                return ""
            rescaled = "rescaled" if metric.details.get("rescaled") else "unrescaled"
            return (
                f"Our BertScore uses {metric.details.get('backbone')} (layer {metric.details.get('layer')}, "
                f"{rescaled}): not comparable with the paper's column ({PAPER_BERTSCORE[0]}, layer "
                f"{PAPER_BERTSCORE[1]}, rescaled)."
            )
    return ""
