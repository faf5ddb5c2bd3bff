"""The paper's Tables 3-6 and Figures 4-5, rebuilt from the stored evaluations, our numbers beside theirs.

A cell shows our number, "not computed" or "not available"; the reason behind every such cell is listed
under its table, so a missing model or endpoint is never mistaken for a score. The paper's numbers are
copied from its text (Tables 3-6); Figure 4's bars are only drawn in the paper, so its per-label values
are not available to compare with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from radvlm_pipeline.evaluation.baselines import model_adapters
from radvlm_pipeline.evaluation.conversation import JUDGE_SCORE
from radvlm_pipeline.evaluation.generation import GROUNDING_TASKS, read_eval_set
from radvlm_pipeline.evaluation.report_generation import BERTSCORE, GREEN, RADGRAPH, ROUGE_L
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
from radvlm_pipeline.layout import StorageLayout
from radvlm_pipeline.markdown import markdown_table
from radvlm_pipeline.schema import CHEXPERT_LABELS

# The paper's numbers, by our model partition name (RadVLM = the "all" recipe).
PAPER_TABLE_3 = {  # report generation: BertScore, Rouge-L, RadGraph F1, GREEN
    "llava_onevision": (35.5, 14.6, 7.2, 11.9),
    "llava_med": (30.1, 12.6, 4.7, 5.0),
    "radialog": (49.7, 22.4, 16.3, 24.4),
    "chexagent": (38.1, 22.9, 20.9, 28.5),
    "maira2": (47.9, 18.5, 13.5, 21.4),
    "all": (51.0, 24.3, 17.7, 24.9),
}
PAPER_TABLE_4 = {  # mAP (%): anatomical, abnormality, phrase grounding
    "chexagent": (6.2, 26.0, 69.7),
    "maira2": (19.8, 11.3, 80.1),
    "all": (85.3, 35.7, 82.8),
}
PAPER_TABLE_5 = {  # GPT-4o judge score: standard, grounded conversations
    "llava_onevision": (4.66, 3.85),
    "llava_med": (4.01, 3.43),
    "radialog": (4.57, 4.09),
    "all": (6.95, 6.55),
}
PAPER_CLASSIFICATION_MACRO_F1 = {"all": 48.4, "classification": 41.5}  # Table 6; Figure 4 has no numbers
PAPER_TABLE_6 = {  # recipe -> {column: paper value}
    "report_generation": {"RadGraph F1": 17.7, "GREEN": 25.4},
    "classification": {"Macro-F1": 41.5},
    "anatomical_grounding": {"Anatomical mAP": 83.0},
    "abnormality_grounding": {"Abnormality mAP": 27.1},
    "phrase_grounding": {"Phrase mAP": 64.6},
    "conversation": {"Judge": 6.28, "Judge (grounded)": 5.66},
    "all": {
        "RadGraph F1": 17.7,
        "GREEN": 24.9,
        "Macro-F1": 48.4,
        "Anatomical mAP": 85.3,
        "Abnormality mAP": 35.7,
        "Phrase mAP": 82.8,
        "Judge": 6.95,
        "Judge (grounded)": 6.55,
    },
}


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
    recipes = [m for m in models if m in _recipes()]
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
                "Each recipe is evaluated on the tasks it was trained on.",
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
            return (
                f"Our BertScore uses {metric.details.get('backbone')} (layer {metric.details.get('layer')}, "
                "unrescaled): not comparable with the paper's column."
            )
    return ""


def per_label_f1(evaluations: Evaluations, models: Sequence[str]) -> dict[str, dict[str, float]]:
    """model -> label -> F1 (%) for every model with a scored classification."""
    found = {}
    for model in models:
        evaluation = evaluations.get("classification", model)
        metric = evaluation.metric(MACRO_F1) if evaluation and evaluation.status == "scored" else None
        if metric is not None and metric.is_computed:
            found[model] = metric.details["per_label_f1"]
    return found


def plot_per_label_f1(
    per_model: dict[str, dict[str, float]], titles: dict[str, str], out: Path
) -> Path | None:
    """Figure 4: grouped bars of per-label F1, a dashed line per model at its macro-F1."""
    if not per_model:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(CHEXPERT_LABELS)
    positions = np.arange(len(labels))
    width = 0.8 / len(per_model)
    figure, axes = plt.subplots(figsize=(12, 4.5))
    for index, (model, scores) in enumerate(per_model.items()):
        values = [scores.get(label, 0.0) for label in labels]
        bars = axes.bar(
            positions + index * width - 0.4 + width / 2, values, width, label=titles.get(model, model)
        )
        axes.axhline(
            float(np.mean(values)), linestyle="--", linewidth=1, color=bars.patches[0].get_facecolor()
        )
    axes.set_xticks(positions, labels, rotation=45, ha="right")
    axes.set_ylabel("F1 (%)")
    axes.set_ylim(0, 100)
    axes.set_title("Abnormality classification: F1 per CheXpert label (dashed: macro-F1)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def grounding_examples(
    storage_root: Path, data_root: Path, task: str, model: str, out: Path, count: int = 4, max_side: int = 256
) -> Path | None:
    """Figure 5: for the first ``count`` answers, the image with the truth (left) and the answer (right).

    ``images.draw_boxes`` draws each panel, so a box looks the same here as in the readers' previews.
    """
    from PIL import Image

    from radvlm_pipeline.boxes import parse_boxes
    from radvlm_pipeline.evaluation.generation import image_resolver
    from radvlm_pipeline.images import draw_boxes

    path = StorageLayout(storage_root).answers(model, task)
    if not path.is_file():
        return None
    answers = pl.read_parquet(path).head(count)
    rows = answers.select("id").join(
        read_eval_set(storage_root, task), on="id", how="left", maintain_order="left"
    )
    resolve = image_resolver(data_root, storage_root)
    panels = []
    for row, texts in zip(rows.to_dicts(), answers["answers"].to_list()):
        image = resolve(row["image_dataset"], row["image_path"])
        if not image.is_file():
            continue
        label = (row.get("target_labels") or ["truth"])[0]
        truth = [(f"truth: {label}", *box) for box in row["target_boxes"] or []]
        predicted = [(f"{model}", *box) for box in parse_boxes(texts[-1] if texts else "")]
        panels.append((draw_boxes(image, truth, max_side), draw_boxes(image, predicted, max_side)))
    if not panels:
        return None
    cell_w = max(max(a.width, b.width) for a, b in panels)
    cell_h = max(max(a.height, b.height) for a, b in panels)
    sheet = Image.new("RGB", (2 * cell_w, cell_h * len(panels)), "white")
    for index, (truth_panel, answer_panel) in enumerate(panels):
        sheet.paste(truth_panel, (0, index * cell_h))
        sheet.paste(answer_panel, (cell_w, index * cell_h))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


@dataclass
class RenderedResults:
    markdown: str
    tables_path: Path
    figures: dict[str, Path]


def render_results(
    storage_root: Path, data_root: Path, example_model: str = "all", models: Sequence[str] | None = None
) -> RenderedResults:
    """Write tables.md, Figure 4 and one Figure 5 sheet per grounding task under evaluation/results/."""
    adapters = model_adapters()
    models = list(models or adapters)
    layout = StorageLayout(storage_root)
    layout.results_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_tables(storage_root, models)
    tables_path = layout.results_tables
    tables_path.write_text(markdown)
    figures = {}
    evaluations = Evaluations(storage_root, models, ["classification"])
    figure_4 = plot_per_label_f1(
        per_label_f1(evaluations, models),
        {m: a.title for m, a in adapters.items()},
        layout.per_label_f1_figure,
    )
    if figure_4:
        figures["figure4"] = figure_4
    for task in GROUNDING_TASKS:
        sheet = grounding_examples(
            storage_root, data_root, task, example_model, layout.grounding_figure(task)
        )
        if sheet:
            figures[f"figure5_{task}"] = sheet
    return RenderedResults(markdown, tables_path, figures)
