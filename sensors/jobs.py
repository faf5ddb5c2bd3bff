"""Partitioned jobs to backfill chosen partitions (``dagster job backfill``, or the UI's Launch backfill):
Table 1 rows of the corpus, training recipes, evaluated models. The backfill daemon runs them, one run
per partition (``dagster dev`` starts it; ``dagster-daemon run`` alone).
"""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from assets.corpus import CORPUS_PARTITIONS, corpus
from assets.evaluation import eval_answers, model_partitions, task_evaluation_assets
from assets.finetune import RECIPE_PARTITIONS

corpus_rows = define_asset_job(
    "corpus_rows",
    selection=AssetSelection.assets(corpus),
    partitions_def=CORPUS_PARTITIONS,
    description="Rebuilds chosen corpus partitions (Table 1 rows, <task>__<source>); the others stay as they are.",
)

training_recipes = define_asset_job(
    "training_recipes",
    selection=AssetSelection.assets("finetuned_model"),
    partitions_def=RECIPE_PARTITIONS,
    description="Fine-tunes chosen recipes (all = RadVLM, or one task family) with the training_launcher resource.",
)

model_evaluation = define_asset_job(
    "model_evaluation",
    selection=AssetSelection.assets(eval_answers, *task_evaluation_assets),
    partitions_def=model_partitions,
    description="One model's answers on every evaluation set, then its metrics per task.",
)

backfill_jobs = [corpus_rows, training_recipes, model_evaluation]
