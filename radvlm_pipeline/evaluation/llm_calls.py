"""GREEN and the conversation judge through the pipeline's LLM layer (cached, governed, retried).

The metric modules only know a ``TextCompleter``; this builds one on ``LLMResource.run`` (or
``run_prompts``), so every judge call lands in the same durable cache as the other LLM stages and a
re-evaluation with unchanged answers makes no call. The offline backend has no rule for judging, so it
is reported as the reason the metric is not computed rather than producing a made-up score.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from radvlm_pipeline.evaluation.metric import MetricUnavailable, TextCompleter
from radvlm_pipeline.llm import GovernanceError, PromptItem, PromptRun, PromptTemplate, UsageStats
from radvlm_pipeline.llm.calls import OK

JUDGE_SYSTEM = (
    "You are a meticulous evaluator of a radiology AI system. Follow the requested output format exactly."
)

Runner = Callable[[PromptTemplate, Sequence[PromptItem]], PromptRun]


def llm_completer(run: Runner, name: str, version: str, usage: UsageStats) -> TextCompleter:
    """A completer that sends each prompt as one item of a fixed template; usage adds up in ``usage``.

    The whole prompt is the item's only field, so the cache key covers every word of it. A governance
    refusal (credentialed data, endpoint not approved) becomes ``MetricUnavailable``: nothing is sent and
    the metric says why instead of failing the other metrics of the asset."""
    template = PromptTemplate(name=name, system=JUDGE_SYSTEM, user="$prompt", version=version)

    def complete(prompts: Sequence[str], datasets: Sequence[str]) -> list[str | None]:
        items = [
            PromptItem(
                item_id=hashlib.sha256(prompt.encode()).hexdigest()[:16],
                datasets=(dataset,),
                fields={"prompt": prompt},
            )
            for prompt, dataset in zip(prompts, datasets)
        ]
        try:
            result = run(template, items)
        except GovernanceError as exc:
            raise MetricUnavailable(f"governance: {exc}") from exc
        usage.add(result.stats)
        return [r.text if r.status == OK else None for r in result.results]

    return complete
