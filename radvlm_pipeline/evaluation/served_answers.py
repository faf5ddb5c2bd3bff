"""Answers from a serving engine: every evaluation question as a chat request to an OpenAI-compatible
vision endpoint (vLLM serving a recipe's ``final/`` folder, say), stored as the local backend stores them.

The requests go through the project's LLM client (``run_prompts``), so they get what the LLM stages get:
``concurrency`` requests in flight, retries with backoff, the governance check before anything is sent
(the evaluation images are credentialed data too) and the durable cache. A request is keyed by the
served model name, which carries the weights' fingerprint (``launch/serving.py``), the question with the
conversation so far, and the image's sha256; greedy decoding (temperature 0). Conversations go round by
round with the model's own earlier answers as history (``generation.generate_answers``), and a whole
round is handed to the client at once so the server can batch it.

Only models prompted with their own chat template can be served this way: the server renders the
messages with the template saved beside the weights, as the local backend does for LLaVA-OneVision and
our recipes. The other baselines are prompted with their authors' hand-written templates
(``prompt_formats.py``), which have no chat-message form.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

import polars as pl

from radvlm_pipeline.evaluation.adapters import LlavaOnevisionAdapter, ModelAdapter
from radvlm_pipeline.evaluation.generation import (
    EVALUATED_TASKS,
    GenerationOutcome,
    Request,
    record_unavailable,
    run_generation,
)
from radvlm_pipeline.evaluation.model_loading import BaselineUnavailable, require_model_folder
from radvlm_pipeline.launch.serving import ServedEndpoint, ServingError, served_model_name
from radvlm_pipeline.layout import DERIVED_IMAGE_ROOTS, StorageLayout
from radvlm_pipeline.llm import LLMSettings, PromptItem, PromptTemplate, UsageStats, run_prompts
from radvlm_pipeline.llm.calls import OK
from radvlm_pipeline.llm.governance import check_endpoint_approval
from radvlm_pipeline.llm.images import ImageInput

# No system message: the server's chat template then renders what the model was trained on.
ANSWER_TEMPLATE = PromptTemplate(name="evaluation_answer", system="", user="$question", version="served-v1")
# Requests handed to the client at once: a round of the largest evaluation set, so the server batches it.
ROUND_SIZE = 4096

# serve(model, weights folder) -> a context in which the endpoint serves exactly those weights.
Serve = Callable[[str, Path], AbstractContextManager[ServedEndpoint]]


class ServedAnswersFailed(RuntimeError):
    """Some requests failed after their retries; the answers that arrived are cached."""


def check_servable(adapter: ModelAdapter) -> None:
    if not isinstance(adapter, LlavaOnevisionAdapter):
        raise ServingError(
            f"{adapter.title} cannot be answered through a serving engine: it is prompted with its authors' "
            "template, which only the local backend reproduces; generate its answers with backend 'local'"
        )


class ServedAnswers:
    """An ``AnswerGenerator`` that asks the endpoint; ``usage`` adds up every round's requests."""

    def __init__(self, adapter: ModelAdapter, settings: LLMSettings, cache_path: Path):
        self.adapter, self.settings, self.cache_path = adapter, settings, cache_path
        self.usage = UsageStats()
        self._images: dict[Path, ImageInput] = {}  # each image hashed once, not once per round

    def _image(self, path: Path) -> ImageInput:
        if path not in self._images:
            self._images[path] = ImageInput.from_file(path)
        return self._images[path]

    def answer(self, requests: Sequence[Request]) -> list[str]:
        items = [
            PromptItem(
                item_id=str(index),
                datasets=request.datasets,
                fields={"question": self.adapter.question(request)},
                history=request.history,
                images=(self._image(request.image_path),),
            )
            for index, request in enumerate(requests)
        ]
        run = run_prompts(self.settings, self.cache_path, ANSWER_TEMPLATE, items)
        self.usage.add(run.stats)
        failed = [result for result in run.results if result.status != OK]
        if failed:
            kinds = Counter(result.error_kind for result in failed)
            raise ServedAnswersFailed(
                f"{len(failed)} of {len(items)} requests to {self.settings.base_url} "
                f"({self.settings.model}) failed: {dict(sorted(kinds.items()))}; first: {failed[0].error}. "
                "The answers that arrived are cached: materialize again to send only the others."
            )
        return [result.text or "" for result in run.results]


def answer_settings(base: LLMSettings, endpoint: ServedEndpoint, max_new_tokens: int) -> LLMSettings:
    """The client's limits and approvals from ``base``; the endpoint, greedy decoding and the answer length
    from here. Failed requests are asked again on the next run: a failure is never an answer."""
    return replace(
        base,
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        model=endpoint.model,
        temperature=0.0,
        max_tokens=max_new_tokens,
        retry_failed=True,
        use_batch=False,
    )


def evaluation_datasets(storage_root: Path, tasks: Sequence[str]) -> set[str]:
    """Every dataset whose text or images the evaluation sets of ``tasks`` would send."""
    layout = StorageLayout(storage_root)
    datasets: set[str] = set()
    for task in tasks:
        path = layout.corpus.eval_set(task)
        if path.is_file():
            frame = pl.read_parquet(path, columns=["source", "image_dataset"])
            datasets |= set(frame["source"]) | (set(frame["image_dataset"]) - set(DERIVED_IMAGE_ROOTS))
    return datasets


def run_served_generation(
    adapter: ModelAdapter,
    model_path: Path | None,
    storage_root: Path,
    data_root: Path,
    serve: Serve,
    base_settings: LLMSettings,
    max_new_tokens: int,
    max_samples: int | None = None,
    log: Callable[[str], None] = print,
) -> tuple[GenerationOutcome, ServedAnswers | None]:
    """Serve the model's weights, answer every evaluation set through the endpoint, stop the server.

    Governance is checked before the server is started (minutes of GPU time for nothing otherwise).
    A model without weights is recorded as not available, as the local backend records it.
    """
    check_servable(adapter)
    try:
        weights = require_model_folder(model_path, adapter.title)
    except BaselineUnavailable as exc:
        return record_unavailable(adapter, model_path, str(exc), storage_root), None
    expected = served_model_name(adapter.name, weights)
    tasks = [task for task in EVALUATED_TASKS if task in adapter.tasks]
    check_endpoint_approval(replace(base_settings, model=expected), evaluation_datasets(storage_root, tasks))
    with serve(adapter.name, weights) as endpoint:
        log(f"{adapter.name}: answering through {endpoint.base_url} ({endpoint.model})")
        generator = ServedAnswers(
            adapter,
            answer_settings(base_settings, endpoint, max_new_tokens),
            StorageLayout(storage_root).llm_cache,
        )
        outcome = run_generation(
            adapter,
            weights,
            storage_root,
            data_root,
            batch_size=ROUND_SIZE,
            max_samples=max_samples,
            log=log,
            generator=generator,
        )
    return outcome, generator
