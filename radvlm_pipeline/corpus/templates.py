"""Question and answer phrasings of the single-turn tasks, written for this project.

Each task family owns one ``TemplateSet``: questions, and answers grouped by *case* (what the sample
holds: boxes, a list of findings, nothing...). Placeholders are ``{name}``; the builder of a task fills
every name its set declares in ``fields`` (see ``engine.render``). Wording variety is the point: the model
should learn the task, not one sentence. Counts are at least those of the paper's public code.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class TemplateSet:
    name: str
    questions: tuple[str, ...]
    answers: dict[str, tuple[str, ...]]  # case -> answer templates
    fields: frozenset[str] = field(default_factory=frozenset)  # placeholders the builder provides

    def __post_init__(self):
        used = {name for text in self.all_texts() for name in _PLACEHOLDER.findall(text)}
        if used - self.fields:
            raise ValueError(
                f"template set {self.name!r} uses undeclared placeholders {sorted(used - self.fields)}"
            )
        if not self.questions or not all(self.answers.values()):
            raise ValueError(
                f"template set {self.name!r} needs at least one question and one answer per case"
            )

    def all_texts(self) -> list[str]:
        return [*self.questions, *(text for texts in self.answers.values() for text in texts)]


REPORT = TemplateSet(
    name="report",
    fields=frozenset({"report"}),
    questions=(
        "Write the radiology report for this chest X-ray.",
        "Please describe the findings on this chest radiograph as a report.",
        "What would a radiologist write in the report for this image?",
        "Draft the findings section for this chest X-ray.",
        "Give me a report of what this radiograph shows.",
        "Produce a radiology report based on this image.",
        "Can you report on this chest film?",
        "Describe this chest X-ray the way it would read in a radiology report.",
        "Summarise the radiological findings of this image in report form.",
        "Read this chest X-ray and write up your findings.",
        "I need a report for this chest radiograph, please.",
        "Interpret this X-ray and give me the report text.",
        "What are the findings on this chest image? Answer as a report.",
        "Compose the report a radiologist would dictate for this study.",
        "Generate a concise radiology report for this frontal chest X-ray.",
        "Report the findings visible on this radiograph.",
    ),
    answers={"report": ("{report}",)},
)

CLASSIFICATION = TemplateSet(
    name="classification",
    fields=frozenset({"findings"}),
    questions=(
        "Which abnormalities can you see on this chest X-ray?",
        "List the abnormal findings on this radiograph.",
        "Is anything abnormal on this image? If so, what?",
        "What pathologies are present in this chest X-ray?",
        "Name the findings you detect on this chest radiograph.",
        "Does this X-ray show any abnormalities? Please list them.",
        "Classify the abnormalities visible on this image.",
        "Which conditions does this chest X-ray show?",
        "Tell me which findings this radiograph contains.",
        "Are there abnormal findings in this chest image?",
        "Identify every abnormality on this X-ray.",
        "Which observations would you label on this chest X-ray?",
    ),
    answers={
        "findings": (
            "The image shows {findings}.",
            "I can identify {findings}.",
            "Findings present: {findings}.",
            "This radiograph shows {findings}.",
            "On this chest X-ray I see {findings}.",
            "The abnormalities present are {findings}.",
        ),
        "none": (
            "I see no abnormalities on this chest X-ray.",
            "No abnormal findings are visible on this image.",
            "This radiograph looks normal; I find no abnormality.",
            "There is nothing abnormal to report on this X-ray.",
            "The chest X-ray shows no findings.",
            "No pathology is visible on this image.",
        ),
    },
)

GROUNDING = TemplateSet(
    name="grounding",
    fields=frozenset({"target", "boxes"}),
    questions=(
        "Where is the {target} on this chest X-ray?",
        "Locate the {target} on this image.",
        "Show me where the {target} is.",
        "Can you find the {target} on this radiograph?",
        "Give the bounding box of the {target}.",
        "What are the coordinates of the {target} on this X-ray?",
        "Mark the {target} on this chest image.",
        "In which part of the image is the {target}?",
        "Point to the {target} in this radiograph.",
        "Outline the region of the {target}.",
        "Where would I find the {target} on this film?",
        "Draw a box around the {target}.",
        "Which area of this chest X-ray corresponds to the {target}?",
        "Please localise the {target} on this image.",
        "Indicate the position of the {target} with coordinates.",
        "Could you tell me where the {target} lies on this X-ray?",
        "Find the {target} and give its location.",
        "Highlight the {target} on this radiograph.",
        "What is the location of the {target} in this image?",
        "Where can the {target} be seen on this chest radiograph?",
    ),
    answers={
        "boxes": (
            "The {target} is at {boxes}.",
            "You can find the {target} at {boxes}.",
            "The {target} lies within {boxes}.",
            "Coordinates of the {target}: {boxes}.",
            "I located the {target} at {boxes}.",
            "The {target} occupies the region {boxes}.",
            "On this image, the {target} is found at {boxes}.",
            "The {target} is enclosed by {boxes}.",
            "Look at {boxes} for the {target}.",
            "The {target} appears at {boxes} on the radiograph.",
            "The {target} is positioned at {boxes}.",
            "Here is the location of the {target}: {boxes}.",
            "The region {boxes} contains the {target}.",
            "The {target} can be seen at {boxes}.",
            "In this X-ray, the {target} is located at {boxes}.",
            "I would place the {target} at {boxes}.",
            "The {target} corresponds to {boxes}.",
            "Location of the {target}: {boxes}.",
            "The {target} sits at {boxes} in the image.",
            "The {target} is marked by {boxes}.",
        )
    },
)

DETECTION = TemplateSet(
    name="detection",
    fields=frozenset({"findings"}),
    questions=(
        "Are there any abnormalities on this chest X-ray, and where are they?",
        "Find all abnormal findings on this image and give their locations.",
        "Detect every lesion on this radiograph with its bounding box.",
        "Which abnormalities does this X-ray show, and at which coordinates?",
        "List each finding on this chest image together with where it is.",
        "Is anything abnormal here? If so, localise it.",
        "Please locate all pathologies visible on this chest radiograph.",
        "Mark every abnormality you can see on this X-ray.",
        "What abnormal findings are present, and where exactly are they on the image?",
        "Scan this chest X-ray for abnormalities and report their positions.",
    ),
    answers={
        "findings": (
            "I found {findings}.",
            "The image shows {findings}.",
            "Abnormalities detected: {findings}.",
            "There is {findings}.",
            "This radiograph contains {findings}.",
            "I can see {findings}.",
            "The following findings are present: {findings}.",
            "Yes: {findings}.",
            "Looking at the X-ray, I detect {findings}.",
            "On this chest X-ray there is {findings}.",
        ),
        "none": (
            "I find no abnormalities on this chest X-ray.",
            "No abnormal findings are visible on this image.",
            "This radiograph shows no lesions to localise.",
            "Nothing abnormal is detected on this X-ray.",
            "There are no findings to mark on this image.",
            "The chest X-ray appears free of abnormalities.",
            "I cannot see any abnormality on this radiograph.",
            "No pathology is present on this image, so there is nothing to locate.",
            "This X-ray looks normal; there are no boxes to report.",
            "No lesions or abnormal findings can be seen here.",
        ),
    },
)

PHRASE = TemplateSet(
    name="phrase",
    fields=frozenset({"phrase", "boxes"}),
    questions=(
        "Where on the image is the following described: {phrase}",
        "Locate this finding on the chest X-ray: {phrase}",
        "Show me the region that matches this sentence: {phrase}",
        "Find the area described here: {phrase}",
        "Which part of the image does this refer to? {phrase}",
        "Give the coordinates for the following observation: {phrase}",
        "Ground this phrase on the radiograph: {phrase}",
        "Where can I see this on the X-ray? {phrase}",
    ),
    answers={
        "boxes": (
            "This is seen at {boxes}.",
            "The described area lies at {boxes}.",
            "It corresponds to {boxes} on the image.",
            "You can find it at {boxes}.",
            "The matching region is {boxes}.",
            "That observation is located at {boxes}.",
            "It appears at {boxes} on the radiograph.",
            "The phrase refers to the area at {boxes}.",
        )
    },
)

TEMPLATE_SETS: dict[str, TemplateSet] = {
    s.name: s for s in (REPORT, CLASSIFICATION, GROUNDING, DETECTION, PHRASE)
}


def templates_fingerprint() -> str:
    """Changes whenever any phrasing changes: part of the corpus asset's code version."""
    digest = hashlib.sha256()
    for name in sorted(TEMPLATE_SETS):
        for text in TEMPLATE_SETS[name].all_texts():
            digest.update(f"{name}\x1f{text}\x1e".encode())
    return digest.hexdigest()
