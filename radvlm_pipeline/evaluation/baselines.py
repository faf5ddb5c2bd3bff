"""The models the evaluation compares: our fine-tuned recipes, the paper's five baselines and an oracle.

Each is one partition of the evaluation assets, with the tasks it is evaluated on (the paper's Tables
3-6 and Figure 4) and the folder its weights are expected in. How each model is prompted, read and
loaded is in ``adapters.py``.

The oracle answers with the reference answer: every metric must give it its best score, which checks
the metric and the evaluation sets together.
"""

from __future__ import annotations

from pathlib import Path

from radvlm_pipeline.evaluation.adapters import (
    CheXagentAdapter,
    LlavaMedAdapter,
    LlavaOnevisionAdapter,
    Maira2Adapter,
    ModelAdapter,
    OracleAdapter,
    RaDialogAdapter,
)
from radvlm_pipeline.evaluation.generation import CONVERSATION_TASKS, EVALUATED_TASKS, GROUNDING_TASKS

REPORT = ("report_generation",)
BASE_MODEL = "llava_onevision"
BASELINES: dict[str, ModelAdapter] = {
    adapter.name: adapter
    for adapter in (
        # Which tasks each baseline is evaluated on: the paper's Tables 3-5 and Figure 4. LLaVA-OV is the
        # base model every recipe starts from (the paper reports it in Tables 3 and 5 only): evaluated on
        # every task, it is the baseline each fine-tuned recipe is read against, the untrained tiny model
        # in the demo.
        LlavaOnevisionAdapter("llava_onevision", "LLaVA-OV (base model)", EVALUATED_TASKS),
        LlavaMedAdapter("llava_med", "LLaVA-Med", REPORT + CONVERSATION_TASKS),
        RaDialogAdapter("radialog", "RaDialog", REPORT + ("classification",) + CONVERSATION_TASKS),
        CheXagentAdapter("chexagent", "CheXagent", REPORT + ("classification",) + GROUNDING_TASKS),
        Maira2Adapter("maira2", "MAIRA-2", REPORT + GROUNDING_TASKS),
    )
}
ORACLE = OracleAdapter("oracle", "Oracle (ground truth)", EVALUATED_TASKS)


def recipe_adapters() -> dict[str, ModelAdapter]:
    """One adapter per fine-tuning recipe, evaluated on the tasks it trained on (paper Table 6)."""
    from radvlm_pipeline.training.recipes import RECIPES

    return {
        recipe: LlavaOnevisionAdapter(
            recipe,
            "RadVLM" if recipe == "all" else f"RadVLM ({recipe.replace('_', ' ')} only)",
            [task for task in EVALUATED_TASKS if task in tasks],
        )
        for recipe, tasks in RECIPES.items()
    }


def model_adapters() -> dict[str, ModelAdapter]:
    """Every model partition of the evaluation: recipes, baselines, oracle."""
    return {**recipe_adapters(), **BASELINES, ORACLE.name: ORACLE}


def default_model_path(storage_root: Path, name: str) -> Path | None:
    """Where a model partition's weights are expected when the configuration names no other path.

    Recipes: the fine-tuning asset's ``final`` folder. LLaVA-OneVision: the base model the fine-tuning
    started from (``models/base/current.json``, written by the base_model asset), else the embedded tiny
    model's folder. Other baselines: ``models/baselines/<name>``.
    """
    from radvlm_pipeline.layout import StorageLayout
    from radvlm_pipeline.training.base_model import current_base_model
    from radvlm_pipeline.training.recipes import RECIPES

    layout = StorageLayout(storage_root)
    if name == ORACLE.name:
        return None
    if name in RECIPES:
        return layout.training_run(name).final
    if name == BASE_MODEL:
        try:
            return Path(current_base_model(storage_root)["path"])
        except FileNotFoundError:
            return layout.tiny_model_dir
    return layout.baseline_dir(name)
