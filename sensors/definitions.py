"""How the pipeline runs by itself: the observed dataset folders, the release and automation sensors,
the backfill jobs and the re-evaluation schedule, for the code location (``definitions.py``) to merge."""

from dagster import Definitions

from sensors import automation, dataset_releases, jobs, schedules

defs = Definitions(
    assets=[dataset_releases.raw_datasets],
    jobs=[dataset_releases.observe_dataset_folders, *jobs.backfill_jobs],
    sensors=[dataset_releases.dataset_releases, automation.automation_conditions],
    schedules=[schedules.weekly_reevaluation],
)
