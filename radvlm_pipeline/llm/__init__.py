"""LLM stages: prior-study removal and conversation synthesis, through any OpenAI-compatible endpoint
or the offline rules, with a durable content-addressed cache and licence governance.

Entry point for any stage that needs an LLM (the evaluation's judge included): ``run_prompts`` (or the
Dagster ``LLMResource.run``, which binds the settings and the cache file).
"""

from radvlm_pipeline.llm.calls import LLMResult, PromptItem, PromptRun, UsageStats
from radvlm_pipeline.llm.governance import GovernanceError
from radvlm_pipeline.llm.prompts import PromptTemplate, load_prompt
from radvlm_pipeline.llm.runner import OfflineRule, Runner, run_prompts
from radvlm_pipeline.llm.settings import LLMConfigurationError, LLMSettings

__all__ = [
    "GovernanceError",
    "LLMConfigurationError",
    "LLMResult",
    "LLMSettings",
    "OfflineRule",
    "PromptItem",
    "PromptRun",
    "PromptTemplate",
    "Runner",
    "UsageStats",
    "load_prompt",
    "run_prompts",
]
