"""What the corpus asset shows a person: Table 1 recomputed from the files, and sample instructions."""

from __future__ import annotations

from typing import Any

import polars as pl

from radvlm_pipeline.corpus.table import TABLE_1, partition_keys
from radvlm_pipeline.markdown import markdown_table

# The paper's Table 1 (samples before repetition, evaluation rows), to compare a build against.
PAPER_TABLE_1: dict[str, tuple[int, int | None]] = {
    "report_generation__mimic_cxr": (232_344, 3_282),
    "report_generation__chexpert_plus": (178_368, None),
    "classification__mimic_cxr": (237_912, None),
    "classification__chexpert": (191_027, 518),
    "anatomical_grounding__chest_imagenome": (80_000, 2_000),
    "abnormality_grounding__vindr_cxr": (16_089, 2_108),
    "abnormality_detection__vindr_cxr": (15_000, None),
    "phrase_grounding__ms_cxr": (971, 189),
    "phrase_grounding__padchest_gr": (4_478, None),
    "conversation__mimic_cxr": (80_312, 523),
    "grounded_conversation__ms_cxr": (858, 157),
    "grounded_conversation__padchest_gr": (2_225, None),
}
PAPER_TOTAL = 1_022_742


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def table1_markdown(manifest: dict[str, Any]) -> str:
    """Rows per Table 1 row as ``samples x repetition``, evaluation rows beside the row of their source
    (as in the paper), and the paper's figures for comparison."""
    evaluation = {(e["task"], e["source"]): e["rows"] for e in manifest["eval_sets"].values()}
    rows = []
    built = manifest["partitions"]
    for key in [*partition_keys(), *sorted(set(built) - set(partition_keys()))]:
        task, source = key.split("__", 1)
        paper_samples, paper_eval = PAPER_TABLE_1.get(key, (None, None))
        p = built.get(key)
        repeat = p["repeat"] if p else next((r.repeat for r in TABLE_1 if r.key == key), 1)
        pairs = f"{p['samples']:,} × {repeat} = {p['rows']:,}" if p else "(not built)"
        paper_pairs = "-" if paper_samples is None else f"{paper_samples:,} × {repeat}"
        rows.append(
            [task, source, pairs, _n(evaluation.pop((task, source), None)), paper_pairs, _n(paper_eval)]
        )
    for (task, source), count in sorted(evaluation.items()):  # an evaluation set with no training row
        rows.append([task, source, "-", f"{count:,}", "-", "-"])
    rows.append(
        [
            "**Total**",
            "",
            f"**{manifest['training_rows']:,}**",
            f"**{manifest['evaluation_rows']:,}**",
            f"**{PAPER_TOTAL:,}**",
            "",
        ]
    )
    header = ["Task", "Source", "Image-instruction pairs", "Evaluation", "Paper pairs", "Paper evaluation"]
    return markdown_table(header, rows) + "\n"


def sample_instructions(rows: pl.DataFrame, per_task: int = 1, max_chars: int = 400) -> str:
    """The first rows (by id) of each task, as a person would read them."""
    blocks = []
    for task in sorted(rows["task"].unique().to_list()):
        for row in rows.filter(pl.col("task") == task).sort("id").head(per_task).iter_rows(named=True):
            turns = "\n".join(
                f"> **{turn['from']}**: {_cut(turn['value'], max_chars)}  " for turn in row["conversation"]
            )
            blocks.append(
                f"**{task}** · `{row['id']}` · template `{row['template_id'] or 'LLM'}`\n\n{turns}\n"
            )
    return "\n".join(blocks)


def _cut(text: str, max_chars: int) -> str:
    text = text.replace("\n", " ").replace("<", "&lt;")  # "<image>" would vanish as an HTML tag
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"
