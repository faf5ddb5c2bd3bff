"""The words every part of conversation synthesis shares: sources, kinds, bounds, and one image's facts.

The stage (``conversations.py``), the joins that gather facts (``conversation_facts.py``), the answer check
(``conversation_validation.py``) and the offline composer (``offline_rules.py``) all read these, so they
live below all four.
"""

from __future__ import annotations

from dataclasses import dataclass

from radvlm_pipeline.boxes import Box, format_box
from radvlm_pipeline.llm.calls import PromptItem

STANDARD_SOURCE = "mimic_cxr"
GROUNDED_SOURCES = ("ms_cxr", "padchest_gr")
# MS-CXR annotates MIMIC-CXR images: where it lacks a report or labels of its own, MIMIC-CXR's serve.
SHARED_STUDIES = {"ms_cxr": STANDARD_SOURCE}
STANDARD, GROUNDED = "standard", "grounded"
MIN_ROUNDS, MAX_ROUNDS = 5, 10
NOT_GIVEN = "not given"


@dataclass(frozen=True)
class ImageFacts:
    """Everything the conversation writer may use about one image."""

    source: str
    image_id: str
    study_id: str | None
    split: str
    kind: str  # STANDARD or GROUNDED
    report: str
    abnormalities: tuple[str, ...] | None  # None: no labels for this image
    view: str | None
    sex: str | None
    observations: tuple[tuple[str, tuple[Box, ...]], ...] = ()  # (phrase, its boxes)

    @property
    def item_id(self) -> str:
        return f"{self.source}/{self.image_id}"

    def fields(self) -> dict[str, str]:
        """The facts as the writer is given them; kept with the conversation (``CONVERSATION_FACTS``) so
        the evaluation's judge sees the same reference data."""
        if self.abnormalities is None:
            abnormalities = NOT_GIVEN
        else:
            abnormalities = ", ".join(self.abnormalities) or "No Finding"
        observations = "; ".join(
            f"{phrase}: {', '.join(format_box(b) for b in boxes)}" for phrase, boxes in self.observations
        )
        return {
            "report": self.report,
            "abnormalities": abnormalities,
            "view": self.view or NOT_GIVEN,
            "sex": self.sex or NOT_GIVEN,
            "observations": observations or "none",
        }

    def allowed_boxes(self) -> set[str]:
        return {format_box(box) for _, boxes in self.observations for box in boxes}

    def item(self, seed: int) -> PromptItem:
        """The prompt for one attempt; it names MIMIC-CXR too for MS-CXR, whose facts may come from it."""
        datasets = (
            (self.source, SHARED_STUDIES[self.source]) if self.source in SHARED_STUDIES else (self.source,)
        )
        return PromptItem(self.item_id, datasets, self.fields(), seed=seed, context=self)
