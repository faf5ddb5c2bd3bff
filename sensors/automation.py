"""The sensor that evaluates the assets' automation conditions (``assets.policies``) and launches what
they request: the rebuild after a dataset release, and ``results_tables`` after evaluations.

Off by default, like ``dataset_releases``: turn both on (UI: Automation) where the pipeline should follow
new data by itself. Requests that span several partitions of one asset become one backfill.
"""

from __future__ import annotations

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

automation_conditions = AutomationConditionSensorDefinition(
    "automation_conditions",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=60,
    description="Every minute, evaluates the assets' automation conditions (assets/policies.py) and launches "
    "what they request: sources, LLM stages and corpus partitions after a dataset release, the results "
    "tables after evaluations. Training and evaluation never start by themselves.",
)
