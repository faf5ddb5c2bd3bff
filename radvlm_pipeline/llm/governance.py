"""Which datasets may be sent to which endpoint.

Credentialed datasets come with data use agreements that restrict where their text may go. The rule
here is deliberately blunt: an endpoint receives credentialed text only for datasets the configuration
names, one by one; the offline backend sends nothing and needs no approval. The check runs before any
request, so a refusal never leaves a partial upload behind.
"""

from __future__ import annotations

from collections.abc import Iterable

from radvlm_pipeline.datasets import DATASETS, Licence
from radvlm_pipeline.llm.settings import OFFLINE, LLMConfigurationError, LLMSettings

APPROVAL_SETTING = "approved_credentialed_datasets"


class GovernanceError(LLMConfigurationError):
    """Sending this data to the configured endpoint is not approved."""


def check_endpoint_approval(settings: LLMSettings, dataset_keys: Iterable[str]) -> None:
    if settings.backend == OFFLINE:
        return
    endpoint = (
        f"{settings.backend} endpoint {settings.base_url or '(SDK default URL)'} (model {settings.model})"
    )
    for key in sorted(set(dataset_keys)):
        dataset = DATASETS.get(key)
        if dataset is None:
            raise GovernanceError(
                f"dataset {key!r} is not in the dataset registry, so its licence is unknown; refusing to send "
                f"its text to the {endpoint}."
            )
        if dataset.licence is Licence.CREDENTIALED and key not in settings.approved_credentialed_datasets:
            raise GovernanceError(
                f"{dataset.title} ({key!r}) is credentialed data and the {endpoint} is not approved for it. "
                f"If your data use agreement allows it, add {key!r} to the LLM resource's "
                f"'{APPROVAL_SETTING}' setting; otherwise use the offline backend or an approved endpoint."
            )
