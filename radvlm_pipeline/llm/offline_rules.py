"""The offline backend's answers: deterministic rules standing in for the LLM, one per prompt.

They let the whole pipeline run with nothing leaving the machine (the demo, the tests, a site without an
approved endpoint). Each rule sees the same facts its prompt does, and its answers go through the same
checks as a model's: prior-study removal keeps sentences free of comparison and history language;
conversations are composed from the image's facts and must pass ``parse_conversation``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from radvlm_pipeline.boxes import format_box
from radvlm_pipeline.llm.conversation_vocabulary import MAX_ROUNDS, MIN_ROUNDS, ImageFacts

# Prior-study removal ------------------------------------------------------------------------------

NOTHING_LEFT = "None"  # the answer, by rule or model, when no sentence is about the current image

# Language that only makes sense against an earlier examination.
_COMPARISON = re.compile(
    r"\b(compar\w*|prior|previous\w*|preceding|since|interval\w*|unchanged|no (?:significant |substantial )?change\w*|"
    r"changed?|stable|stably|again|persist\w*|improv\w*|worsen\w*|increas\w*|decreas\w*|resolv\w*|resolution|"
    r"new|newly|redemonstrat\w*|re-demonstrat\w*|recurr\w*|progress\w*|remain\w*|earlier|before|"
    r"(?:slightly |minimally )?(?:larger|smaller|better|worse)|similar|as before)\b",
    re.IGNORECASE,
)
# History, indications, recommendations and communication: not visible on any image.
_NOT_FINDINGS = re.compile(
    r"\b(history|indication|clinical (?:information|question|correlation)|year[- ]old|notif\w*|discussed|"
    r"telephone|phone|called|paged|communicated|recommend\w*|follow[- ]?up|reason for exam)\b|\bdr\.",
    re.IGNORECASE,
)
# A leading or trailing comparison clause that can be cut off while keeping the finding in between.
_LEADING_CLAUSE = re.compile(
    r"^(?:(?:as |when )?(?:compared (?:with|to)|in comparison (?:with|to)|since|relative to|from)\b[^,]*|as before|"
    r"again|as on the prior(?: study)?),\s*",
    re.IGNORECASE,
)
_TRAILING_CLAUSE = re.compile(
    r",?\s*\b(?:as |when )?(?:compared (?:with|to)|in comparison (?:with|to)|since|relative to)\b[^.]*(?=\.?$)",
    re.IGNORECASE,
)
# A comparative modifier in front of a finding ("new effusion", "stable cardiomegaly", "is again seen"):
# the finding stays, the modifier goes.
_COMPARATIVE_MODIFIER = re.compile(
    r"\b(?:new(?:ly)?|persistent(?:ly)?|stable|unchanged|again)\s+"
    r"(?=[a-z])(?!(?:and|or|but|in|at|on|with|since|from|compared|to|when|as|position|appearance|size)\b)",
    re.IGNORECASE,
)
_SECTION_HEADER = re.compile(r"^[A-Z][A-Z /]+:\s*")
_ABBREVIATIONS = re.compile(r"(?:\b(?:dr|mr|mrs|ms|st|vs|approx|e\.g|i\.e)|^\d+)\.$", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """Sentences of a report; a piece ending in an abbreviation or a list number joins the next one."""
    pieces = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    sentences: list[str] = []
    for piece in pieces:
        if sentences and _ABBREVIATIONS.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        elif piece:
            sentences.append(piece)
    return sentences


def mentions_prior(text: str) -> bool:
    return bool(_COMPARISON.search(text))


def _current_part(sentence: str) -> str | None:
    """The sentence without a cuttable comparison clause, or None when it is about change or history."""
    if _NOT_FINDINGS.search(sentence):
        return None
    trimmed = _LEADING_CLAUSE.sub("", _SECTION_HEADER.sub("", sentence))
    trimmed = _COMPARATIVE_MODIFIER.sub("", _TRAILING_CLAUSE.sub("", trimmed)).strip()
    if not trimmed or mentions_prior(trimmed) or len(trimmed.split()) < 2:
        return None
    trimmed = trimmed[0].upper() + trimmed[1:]
    return trimmed if trimmed.endswith((".", "!", "?")) else trimmed + "."


def remove_prior_mentions_by_rules(report: str) -> str:
    """The offline backend: keep sentences free of comparison and history language, cutting a leading or
    trailing comparison clause or a comparative modifier off where the rest still states a finding.
    "None" when nothing is left."""
    kept = [part for part in map(_current_part, split_sentences(report)) if part]
    return " ".join(kept) if kept else NOTHING_LEFT


# Conversations ------------------------------------------------------------------------------------

VIEW_NAMES = {"PA": "posterior-anterior", "AP": "anterior-posterior"}
SEX_NAMES = {"M": "male", "F": "female"}


# For the offline composer, per CheXpert label: how to ask about it, words that tie a report sentence to
# it, and our own one-sentence explanation of the term.
@dataclass(frozen=True)
class LabelTerms:
    question: str
    words: str  # regular expression
    meaning: str


LABEL_TERMS = {
    "Atelectasis": LabelTerms(
        "Is there any atelectasis?",
        "atelecta",
        "Atelectasis is a partial collapse of lung tissue, so that part of the lung holds less air.",
    ),
    "Cardiomegaly": LabelTerms(
        "Is the heart enlarged?",
        "heart|cardiac|cardiomegaly",
        "Cardiomegaly means an enlarged heart: it looks wider than usual relative to the chest.",
    ),
    "Consolidation": LabelTerms(
        "Is there any consolidation?",
        "consolidat",
        "Consolidation means air spaces of the lung filled with fluid or cells, so the area looks white.",
    ),
    "Edema": LabelTerms(
        "Is there any pulmonary edema?",
        "edema|congestion",
        "Pulmonary edema is fluid in the lung tissue, seen as hazy or streaky lungs.",
    ),
    "Enlarged Cardiomediastinum": LabelTerms(
        "Is the mediastinum widened?",
        "mediastin",
        "An enlarged cardiomediastinum is a widened central shadow of the chest, "
        "where the heart and great vessels lie.",
    ),
    "Fracture": LabelTerms(
        "Is there a fracture?", "fracture", "A fracture is a break in a bone, such as a rib."
    ),
    "Lung Lesion": LabelTerms(
        "Is there a lung lesion?",
        "nodule|mass|lesion",
        "A lung lesion is a localised abnormal spot in the lung, such as a nodule or a mass.",
    ),
    "Lung Opacity": LabelTerms(
        "Are there any lung opacities?",
        "opacit",
        "A lung opacity is an area of lung that looks whiter than it should; it has many causes.",
    ),
    "Pleural Effusion": LabelTerms(
        "Is there a pleural effusion?",
        "effusion",
        "A pleural effusion is fluid between the lung and the chest wall, often blunting "
        "the angles at the lung bases.",
    ),
    "Pleural Other": LabelTerms(
        "Is there any other pleural abnormality?",
        "pleural thicken|plaque",
        "This means a change of the pleura other than fluid, such as thickening or plaques.",
    ),
    "Pneumonia": LabelTerms(
        "Could this be pneumonia?",
        "pneumonia|infection",
        "Pneumonia is an infection of the lung; on an X-ray it usually shows as consolidation.",
    ),
    "Pneumothorax": LabelTerms(
        "Is there a pneumothorax?",
        "pneumothorax",
        "A pneumothorax is air between the lung and the chest wall, which lets the lung fall away from it.",
    ),
    "Support Devices": LabelTerms(
        "Are there any support devices?",
        "tube|line|catheter|pacemaker|wire|device|clip|stent",
        "Support devices are tubes, lines, wires or other medical devices seen on the image.",
    ),
}


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _finding_rounds(facts: ImageFacts, sentences: Sequence[str], rng: random.Random) -> list[tuple[str, str]]:
    """Questions on the findings. CheXpert labels allow "is there X?" with yes and no answers; free-text
    findings (PadChest-GR categories) only yes answers: what they leave out is unknown, not absent."""
    findings = list(facts.abnormalities or ())
    rounds = []
    if facts.abnormalities is None:
        return rounds
    rounds.append(
        (
            rng.choice(["Which abnormalities can you see?", "Is anything abnormal on this image?"]),
            f"I see signs of {_join([f.lower() for f in findings])}."
            if findings
            else "I do not see a clear abnormality on this image.",
        )
    )
    for finding in findings[:3]:
        terms = LABEL_TERMS.get(finding)
        pattern = re.compile(terms.words if terms else re.escape(finding), re.IGNORECASE)
        evidence = [sentence for sentence in sentences if pattern.search(sentence)]
        question = terms.question if terms else f"Is there any {finding.lower()}?"
        rounds.append(
            (question, f"Yes. {evidence[0]}" if evidence else f"Yes, the image shows {finding.lower()}.")
        )
        if terms:
            rounds.append((f"What does {finding.lower()} mean?", terms.meaning))
    if all(finding in LABEL_TERMS for finding in findings):
        absent = [label for label in LABEL_TERMS if label not in findings]
        for label in rng.sample(absent, k=min(2, len(absent))):
            rounds.append((LABEL_TERMS[label].question, f"No, I do not see signs of {label.lower()} here."))
    return rounds


def compose_conversation(facts: ImageFacts, seed: int) -> str:
    """A dialogue built only from the facts, varied by seed; valid under ``parse_conversation``."""
    rng = random.Random(f"{facts.item_id}/{seed}")
    sentences = split_sentences(facts.report)
    findings = [f.lower() for f in facts.abnormalities or ()]
    view = f"{facts.view} ({VIEW_NAMES[facts.view]})" if facts.view in VIEW_NAMES else None
    sex = SEX_NAMES.get(facts.sex or "")

    subject = f"{'an' if view and view[0] in 'AEIOU' else 'a'} {view + ' ' if view else ''}chest X-ray"
    opening_answer = f"This is {subject}{f' of a {sex} patient' if sex else ''}. " + " ".join(sentences[:2])
    opening = (
        rng.choice(
            [
                "What do you see on this chest X-ray?",
                "Can you describe this image?",
                "What are the main findings here?",
            ]
        ),
        opening_answer.strip(),
    )
    box_rounds = [
        (
            rng.choice([f"Where is the {phrase} on the image?", f"Can you locate the {phrase}?"]),
            f"The {phrase} is at {' and '.join(format_box(b) for b in boxes)}.",
        )
        for phrase, boxes in ((p.rstrip(". "), bs) for p, bs in facts.observations[:3])
    ]
    optional = _finding_rounds(facts, sentences, rng)
    if view:
        optional.append(("Which view is this?", f"It is a {view} view."))
    if len(sentences) > 2:
        optional.append(("Is there anything else worth noting?", " ".join(sentences[2:])))
    optional.append(
        (
            "Should I be worried about this?",
            "I can only describe what the image shows; what it means for the patient depends on the "
            "clinical picture, so a physician should interpret it.",
        )
    )
    summary = f"showing {_join(findings)}" if findings else "without a clear abnormality"
    if facts.abnormalities is not None:
        optional.append(
            ("Can you summarise the image in one sentence?", f"{subject[0].upper()}{subject[1:]} {summary}.")
        )
    for organ, words in (("lungs", r"lung|pulmonary|pneumo|effusion"), ("heart", r"heart|cardi")):
        about = [sentence for sentence in sentences if re.search(words, sentence, re.IGNORECASE)]
        if about:
            optional.append((f"What can you tell me about the {organ}?", " ".join(about[:2])))
    rng.shuffle(optional)
    essential = box_rounds[:1]  # a grounded conversation always asks where at least one finding is
    middle = essential + (box_rounds[1:] + optional)[: MAX_ROUNDS - 1 - len(essential)]
    fillers = [  # true of any frontal chest X-ray with these facts: used only to reach MIN_ROUNDS
        ("What kind of image is this?", f"It is {subject}."),
        (
            "Which side of the image is the patient's left?",
            "By convention the patient's left side is shown on the right of the image.",
        ),
        ("Can you sum up the main finding briefly?", sentences[0] if sentences else "Nothing stands out."),
    ]
    middle += fillers[: max(0, MIN_ROUNDS - 1 - len(middle))]
    rng.shuffle(middle)
    turns = [
        {"from": who, "value": text}
        for question, answer in [opening, *middle]
        for who, text in (("human", question), ("gpt", answer))
    ]
    return json.dumps(turns, ensure_ascii=False)
