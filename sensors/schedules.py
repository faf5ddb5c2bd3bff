"""Periodic re-evaluation: every model answered and scored again on the current evaluation sets.

Off by default (GPU time). When on, each Sunday night it requests one run of the ``model_evaluation`` job
(``eval_answers`` and the per-task ``eval_*`` assets) per model partition; ``results_tables`` re-renders
once they are done (its automation condition, with the automation sensor on).
"""

from __future__ import annotations

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, schedule

from assets.evaluation import model_partitions
from sensors.jobs import model_evaluation

REEVALUATION_CRON = "0 3 * * 0"  # Sundays 03:00 (the schedule's timezone: UTC)


@schedule(
    job=model_evaluation,
    cron_schedule=REEVALUATION_CRON,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Weekly: every model (fine-tuned recipes, baselines, oracle) answered and scored again on the "
    "current evaluation sets, one run per model; GPU steps queue in the gpu_inference pool.",
)
def weekly_reevaluation(context: ScheduleEvaluationContext):
    tick = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")
    return [
        RunRequest(run_key=f"{tick}/{model}", partition_key=model, tags={"radvlm/reevaluation": tick})
        for model in model_partitions.get_partition_keys()
    ]
