"""How to reach an LLM and how hard to push it: the plain-Python form of the Dagster ``LLMResource``.

Kept free of Dagster so the stages, the benchmark and the tests build it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from radvlm_pipeline.llm.images import DATA_URL, IMAGE_TRANSPORTS

OFFLINE = "offline"  # deterministic rules, no model, nothing leaves the machine
OPENAI = "openai"  # any OpenAI-compatible endpoint: OpenAI, vLLM, Ollama, llama.cpp server
AZURE = "azure"  # Azure OpenAI (model = deployment name)
BACKENDS = (OFFLINE, OPENAI, AZURE)

OFFLINE_BACKEND_NAME = "offline-rules"


class LLMConfigurationError(ValueError):
    """The settings cannot work as given (unknown backend, rejected key, unapproved dataset): retrying the
    step would fail the same way, so the assets fail at once instead of spending their retries on it."""


# USD per million tokens (input, output), list prices of the models the paper used.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
}


@dataclass(frozen=True)
class LLMSettings:
    backend: str = OFFLINE
    model: str = "gpt-4o-mini"
    test_model: str | None = None  # writes the test split's conversations; None: ``model``
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    azure_api_version: str | None = None
    temperature: float = 0.0
    max_tokens: int = 2048
    timeout_s: float = 120.0
    concurrency: int = 16
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_wait_s: float = (
        300.0  # a Retry-After longer than this fails the call instead of stalling the run
    )
    # Ask again for requests the endpoint answered with a refusal of the request itself (a 400: too long,
    # filtered). Those are cached like answers; transient failures (429, 5xx, timeouts) never are.
    retry_failed: bool = False
    use_batch: bool = False
    batch_poll_interval_s: float = 30.0
    batch_max_wait_s: float = 3600.0
    batch_price_factor: float = 0.5
    approved_credentialed_datasets: tuple[str, ...] = ()
    image_transport: str = DATA_URL  # how images are sent; not in the cache key (the bytes are the same)
    prices: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise LLMConfigurationError(f"unknown LLM backend {self.backend!r}; expected one of {BACKENDS}")
        if self.image_transport not in IMAGE_TRANSPORTS:
            raise ValueError(
                f"unknown image transport {self.image_transport!r}; expected one of {IMAGE_TRANSPORTS}"
            )
        if self.backend == AZURE and not (self.base_url and self.azure_api_version):
            raise LLMConfigurationError(
                "the azure backend needs base_url (the Azure OpenAI resource endpoint) and azure_api_version"
            )

    @property
    def endpoint_kind(self) -> str:
        """Part of every cache key: the same model name served by a different kind of endpoint is another model."""
        return {OFFLINE: OFFLINE_BACKEND_NAME, OPENAI: "openai-compatible", AZURE: "azure-openai"}[
            self.backend
        ]

    @property
    def answering_model(self) -> str:
        """The model named in cache keys and metadata: the offline rules stand in for one."""
        return OFFLINE_BACKEND_NAME if self.backend == OFFLINE else self.model

    @property
    def backend_label(self) -> str:
        """What the output tables and metadata name as the producer of each answer."""
        return OFFLINE_BACKEND_NAME if self.backend == OFFLINE else f"{self.backend}:{self.model}"

    def request_params(self, seed: int) -> dict[str, Any]:
        """The sampling parameters sent with each request; part of the cache key."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": seed}
