"""The code location: every asset, check, resource, sensor and schedule of radvlm-pipeline.

Loaded by `dagster dev -w workspace.yaml` and `dagster asset materialize -f definitions.py`.
Data flows one way: raw dataset folders -> sources -> llm -> corpus -> training -> evaluation.
How it runs by itself (new releases, re-evaluation, pools, retries): the `sensors` package.
"""

from dagster import Definitions

from assets import corpus, evaluation, finetune, llm_stages, sources
from resources import build_resources
from sensors import automation, dataset_releases, jobs, schedules

defs = Definitions(
    assets=[
        dataset_releases.raw_datasets,
        *sources.source_assets,
        *llm_stages.llm_assets,
        *corpus.corpus_assets,
        *finetune.build_finetune_assets(corpus.corpus),
        *evaluation.evaluation_assets,
    ],
    asset_checks=[*sources.source_checks, *corpus.corpus_checks],
    jobs=[dataset_releases.observe_dataset_folders, *jobs.backfill_jobs],
    sensors=[dataset_releases.dataset_releases, automation.automation_conditions],
    schedules=[schedules.weekly_reevaluation],
    resources=build_resources(),
)
