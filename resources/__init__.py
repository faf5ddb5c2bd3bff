"""Dagster resources, chosen per environment at the edge.

``build_resources`` is the one place that decides which implementation each resource key gets, from
environment variables, so assets never know whether they run on a laptop with the sample or on a cluster:
- ``storage``: data root and storage root (RADVLM_DATA_ROOT, RADVLM_STORAGE_ROOT);
- ``llm``: the offline rules unless RADVLM_LLM_BACKEND names an endpoint (see resources/llm.py).
"""

from __future__ import annotations

from resources.llm import LLMResource
from resources.storage import PipelineStorage


def build_resources() -> dict[str, object]:
    storage = PipelineStorage.from_environment()
    return {
        "storage": storage,
        "llm": LLMResource.from_environment(storage),
    }
