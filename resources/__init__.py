"""Dagster resources, chosen per environment at the edge.

``build_resources`` is the one place that decides which implementation each resource key gets, from
environment variables, so assets never know whether they run on a laptop with the sample or on a cluster.
"""

from __future__ import annotations

from resources.storage import PipelineStorage


def build_resources() -> dict[str, object]:
    return {
        "storage": PipelineStorage.from_environment(),
    }
