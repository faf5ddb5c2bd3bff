"""The LLM resource: which endpoint answers the pipeline's prompts, how hard to push it, what it may see.

Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server) or Azure OpenAI, or the offline
rules (the default: no network, no key). The API key comes from the environment through ``EnvVar`` and
is never written to metadata, logs or the cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import Config, ConfigurableResource, EnvVar
from pydantic import Field

from radvlm_pipeline.llm import (
    LLMSettings,
    OfflineRule,
    PromptItem,
    PromptRun,
    PromptTemplate,
    UsageStats,
    run_prompts,
)
from radvlm_pipeline.llm.governance import check_endpoint_approval
from radvlm_pipeline.llm.settings import BACKENDS, DEFAULT_PRICES, OFFLINE
from resources.storage import PipelineStorage

if TYPE_CHECKING:
    from dagster._config.pythonic_config.resource import PartialResource

_DEFAULTS = LLMSettings()

BACKEND_ENV = "RADVLM_LLM_BACKEND"
BASE_URL_ENV = "RADVLM_LLM_BASE_URL"
MODEL_ENV = "RADVLM_LLM_MODEL"
TEST_MODEL_ENV = "RADVLM_LLM_TEST_MODEL"
API_KEY_ENV = "RADVLM_LLM_API_KEY"
AZURE_API_VERSION_ENV = "RADVLM_LLM_AZURE_API_VERSION"
APPROVED_ENV = "RADVLM_LLM_APPROVED_DATASETS"  # comma-separated dataset keys


class ModelPrice(Config):
    input_usd_per_million_tokens: float
    output_usd_per_million_tokens: float


class LLMResource(ConfigurableResource):
    """Answers prompts through ``run``, with the durable cache at ``StorageLayout.llm_cache``."""

    storage: PipelineStorage
    backend: str = Field(
        default=_DEFAULTS.backend, description=f"One of {BACKENDS}; 'offline' needs no model."
    )
    model: str = Field(
        default=_DEFAULTS.model,
        description="Model name (Azure: deployment name). The paper's: gpt-4o-mini (prior removal, "
        "training conversations).",
    )
    test_model: str | None = Field(
        default=None,
        description="Model that writes the held-out (test split) conversations; None: 'model'. The paper "
        "wrote them with a stronger model than the training ones: gpt-4o.",
    )
    base_url: str | None = Field(
        default=None,
        description="Endpoint URL, e.g. http://localhost:8000/v1 for vLLM; "
        "None = the SDK's default (api.openai.com).",
    )
    api_key: str | None = Field(default=None, description="Set it with EnvVar, never as a literal.")
    azure_api_version: str | None = Field(default=None, description="Azure OpenAI only.")
    temperature: float = Field(default=_DEFAULTS.temperature)
    max_tokens: int = Field(default=_DEFAULTS.max_tokens)
    timeout_s: float = Field(default=_DEFAULTS.timeout_s, description="Per request.")
    concurrency: int = Field(default=_DEFAULTS.concurrency, description="Requests in flight at once.")
    requests_per_minute: float | None = Field(default=None, description="None = no limit of ours.")
    tokens_per_minute: float | None = Field(
        default=None, description="Counted as prompt chars/4 + max_tokens."
    )
    max_retries: int = Field(default=_DEFAULTS.max_retries, description="On 429, 5xx, timeouts, bad bodies.")
    backoff_base_s: float = Field(default=_DEFAULTS.backoff_base_s)
    backoff_max_s: float = Field(default=_DEFAULTS.backoff_max_s)
    max_retry_wait_s: float = Field(
        default=_DEFAULTS.max_retry_wait_s,
        description="A longer Retry-After fails the call instead of stalling the run.",
    )
    retry_failed: bool = Field(
        default=False,
        description="Send again the requests the endpoint refused (a cached 4xx). Transient failures "
        "(429, 5xx, timeouts) are never cached: the next run asks again without this.",
    )
    use_batch: bool = Field(
        default=False, description="Send through the Batch API (cheaper, hours not seconds)."
    )
    batch_poll_interval_s: float = Field(default=_DEFAULTS.batch_poll_interval_s)
    batch_max_wait_s: float = Field(
        default=_DEFAULTS.batch_max_wait_s,
        description="Then the asset fails; the next run picks the same batches up.",
    )
    batch_price_factor: float = Field(default=_DEFAULTS.batch_price_factor)
    approved_credentialed_datasets: list[str] = Field(
        default_factory=list,
        description="Credentialed datasets (keys of radvlm_pipeline.datasets) whose text this endpoint may receive.",
    )
    image_transport: str = Field(
        default=_DEFAULTS.image_transport,
        description="Images in prompts: 'data_url' (base64, any endpoint) or 'file_url' (a server reading this filesystem).",
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: {
            model: ModelPrice(input_usd_per_million_tokens=i, output_usd_per_million_tokens=o)
            for model, (i, o) in DEFAULT_PRICES.items()
        },
        description="USD per million tokens, for the estimated cost in metadata.",
    )

    @classmethod
    def from_environment(cls, storage: PipelineStorage) -> PartialResource[LLMResource]:
        """Offline unless RADVLM_LLM_BACKEND says otherwise; the key is read at run time from RADVLM_LLM_API_KEY.

        The environment's values become the defaults of the resource's run config
        (``configure_at_launch``), so a run config that sets one field (say ``timeout_s``) changes that
        field alone. Built as a plain resource instead, any run config would replace every environment
        setting and quietly run on the offline rules."""
        approved = [key.strip() for key in os.environ.get(APPROVED_ENV, "").split(",") if key.strip()]
        return cls.configure_at_launch(
            storage=storage,
            backend=os.environ.get(BACKEND_ENV, OFFLINE),
            base_url=os.environ.get(BASE_URL_ENV) or None,
            model=os.environ.get(MODEL_ENV, _DEFAULTS.model),
            test_model=os.environ.get(TEST_MODEL_ENV) or None,
            api_key=EnvVar(API_KEY_ENV) if os.environ.get(API_KEY_ENV) else None,
            azure_api_version=os.environ.get(AZURE_API_VERSION_ENV) or None,
            approved_credentialed_datasets=approved,
        )

    def settings(self) -> LLMSettings:
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(LLMSettings)}
        values["approved_credentialed_datasets"] = tuple(self.approved_credentialed_datasets)
        values["prices"] = {
            model: (price.input_usd_per_million_tokens, price.output_usd_per_million_tokens)
            for model, price in self.prices.items()
        }
        return LLMSettings(**values)

    @property
    def cache_path(self) -> Path:
        return self.storage.layout.llm_cache

    @property
    def backend_label(self) -> str:
        return self.settings().backend_label

    def check_approval(self, dataset_keys: Iterable[str]) -> None:
        """Raise GovernanceError if any of these datasets may not be sent to the endpoint."""
        check_endpoint_approval(self.settings(), dataset_keys)

    def run(
        self,
        template: PromptTemplate,
        items: Sequence[PromptItem],
        offline: OfflineRule | None = None,
        model: str | None = None,
    ) -> PromptRun:
        """Answer ``items`` with ``template``; the entry point for every LLM use in the pipeline.

        Each item names its dataset (governance is checked for all of them before any request), its
        template fields and a seed. Answers are cached by content, so calling again with the same items
        costs nothing; failures come back as results with ``status="failed"`` and an ``error_kind``.
        ``offline`` is the rule the offline backend answers with; without one the offline backend
        returns failures of kind ``no_offline_rule``. ``result.stats`` feeds ``usage_metadata``.
        ``model`` answers instead of the resource's own (the test split's ``test_model``).

        For an LLM-as-judge: ``PromptTemplate.from_file(path)`` for the judge prompt, one ``PromptItem``
        per conversation (``fields`` = the template's ``$names``), then parse ``result.text``.
        """
        settings = self.settings() if model is None else replace(self.settings(), model=model)
        return run_prompts(settings, self.cache_path, template, items, offline)

    def usage_metadata(self, stats: UsageStats) -> dict[str, Any]:
        """Which backend and model answered (so an output written by the offline rules cannot pass for
        an endpoint's), calls, cache hits, failures and retries by kind, tokens, estimated cost, latency."""
        settings = self.settings()
        return {
            "llm_backend": settings.backend,
            "llm_model": settings.answering_model,
            **stats.as_metadata(settings.prices, settings.batch_price_factor),
        }
