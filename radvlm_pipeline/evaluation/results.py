"""The paper's Tables 3-6 and Figures 4-5, rebuilt from the stored evaluations, our numbers beside theirs.

The one call the results asset makes: every table into ``tables.md`` (``results_tables.py``), every
figure beside it (``results_figures.py``), the paper's own numbers from ``paper_numbers.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from radvlm_pipeline.evaluation.baselines import BASE_MODEL, model_adapters
from radvlm_pipeline.evaluation.generation import GROUNDING_TASKS
from radvlm_pipeline.evaluation.results_figures import grounding_examples, per_label_f1, plot_per_label_f1
from radvlm_pipeline.evaluation.results_tables import Evaluations, render_tables
from radvlm_pipeline.layout import StorageLayout


@dataclass
class RenderedResults:
    markdown: str
    tables_path: Path
    figures: dict[str, Path]


def render_results(
    storage_root: Path,
    data_root: Path,
    example_models: Sequence[str] = (BASE_MODEL, "all"),
    models: Sequence[str] | None = None,
) -> RenderedResults:
    """Write tables.md, Figure 4 and one Figure 5 sheet per grounding task under evaluation/results/;
    Figure 5 draws the answers of ``example_models`` side by side."""
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
            storage_root, data_root, task, example_models, layout.grounding_figure(task)
        )
        if sheet:
            figures[f"figure5_{task}"] = sheet
    return RenderedResults(markdown, tables_path, figures)
