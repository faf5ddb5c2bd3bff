"""Partitioned jobs to backfill chosen partitions (``dagster job backfill``, or the UI's Launch backfill):
Table 1 rows of the corpus, training recipes, evaluated models; one run per partition. Partitioning comes
from the assets. A run of one asset needs no step processes: those jobs execute in the run's process.
"""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor

from assets.corpus import corpus
from assets.evaluation import eval_answers, task_evaluation_assets

corpus_rows = define_asset_job(
    "corpus_rows",
    selection=AssetSelection.assets(corpus),
    executor_def=in_process_executor,
    description="Rebuilds chosen corpus partitions (Table 1 rows, <task>__<source>); the others stay as they are.",
)

training_recipes = define_asset_job(
    "training_recipes",
    selection=AssetSelection.assets("finetuned_model"),
    executor_def=in_process_executor,
    description="Fine-tunes chosen recipes (all = RadVLM, or one task family) with the training_launcher resource.",
)

model_evaluation = define_asset_job(
    "model_evaluation",
    selection=AssetSelection.assets(eval_answers, *task_evaluation_assets),
    description="One model's answers on every evaluation set, then its metrics per task.",
)

backfill_jobs = [corpus_rows, training_recipes, model_evaluation]
