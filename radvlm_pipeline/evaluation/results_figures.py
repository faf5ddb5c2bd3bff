"""The paper's Figures 4 and 5 drawn from our evaluations: per-label F1 bars and grounding examples.

Figures need matplotlib or Pillow, imported only when one is drawn, so reading the tables needs neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from radvlm_pipeline.evaluation.generation import read_eval_set
from radvlm_pipeline.evaluation.results_tables import Evaluations
from radvlm_pipeline.evaluation.scoring import MACRO_F1
from radvlm_pipeline.layout import StorageLayout
from radvlm_pipeline.schema import CHEXPERT_LABELS


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
    storage_root: Path,
    data_root: Path,
    task: str,
    models: Sequence[str],
    out: Path,
    count: int = 4,
    max_side: int = 256,
) -> Path | None:
    """Figure 5: for the first ``count`` rows, the image with the truth (left), then each model's answer.

    Models side by side (the base model beside a fine-tuned recipe) show what fine-tuning changed; a model
    without answers for the task is left out, one without an answer for a row gets an image without
    boxes. ``images.draw_boxes`` draws each panel, so a box looks the same here as in the readers'
    previews.
    """
    from PIL import Image

    from radvlm_pipeline.boxes import parse_boxes
    from radvlm_pipeline.evaluation.generation import image_resolver
    from radvlm_pipeline.images import draw_boxes

    layout = StorageLayout(storage_root)
    frames = {
        model: pl.read_parquet(layout.answers(model, task), columns=["id", "answers"])
        for model in models
        if layout.answers(model, task).is_file()
    }
    if not frames:
        return None
    ids = next(iter(frames.values())).select("id").head(count)  # the rows the first model answered
    # model -> row id -> its last answer
    answers = {model: {i: a[-1] for i, a in frame.iter_rows() if a} for model, frame in frames.items()}
    rows = ids.join(read_eval_set(storage_root, task), on="id", how="left", maintain_order="left")
    resolve = image_resolver(data_root, storage_root)
    panels = []
    for row in rows.to_dicts():
        image = resolve(row["image_dataset"], row["image_path"])
        if not image.is_file():
            continue
        label = (row.get("target_labels") or ["truth"])[0]
        truth = [(f"truth: {label}", *box) for box in row["target_boxes"] or []]
        row_panels = [draw_boxes(image, truth, max_side)]
        for model, by_id in answers.items():
            boxes = parse_boxes(by_id.get(row["id"], ""))
            row_panels.append(draw_boxes(image, [(model, *box) for box in boxes], max_side))
        panels.append(row_panels)
    if not panels:
        return None
    cell_w = max(panel.width for row_panels in panels for panel in row_panels)
    cell_h = max(panel.height for row_panels in panels for panel in row_panels)
    sheet = Image.new("RGB", (cell_w * (1 + len(answers)), cell_h * len(panels)), "white")
    for index, row_panels in enumerate(panels):
        for column, panel in enumerate(row_panels):
            sheet.paste(panel, (column * cell_w, index * cell_h))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
