"""Conversation synthesis: multi-turn user/assistant dialogues about one image, written from its facts.

Standard conversations come from MIMIC-CXR (cleaned report, CheXpert labels, view, sex); grounded ones
from MS-CXR and PadChest-GR, whose phrase boxes are given to the writer so the assistant can answer
"where is it?" with coordinates. The writer is an LLM (``prompts/conversation.md``) or, offline, a
deterministic composer over the same facts.

Whoever wrote it, an answer must pass ``parse_conversation``: a JSON list of 5-10 rounds (10-20 turns)
alternating human/gpt, and every coordinate in it one of the boxes given. A failing answer is asked for
again with another seed, a bounded number of times, then quarantined with its reason and raw text.
Every input (a MIMIC-CXR report, a grounded image) ends as a conversation or a quarantine row.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from radvlm_pipeline.boxes import Box, format_box, parse_boxes
from radvlm_pipeline.llm.calls import FAILED, PromptItem, UsageStats
from radvlm_pipeline.llm.outputs import StageOutput, quarantine_row, quarantine_table, sample_markdown
from radvlm_pipeline.llm.prior_removal import STATUS_FAILED, STATUS_OK, split_sentences
from radvlm_pipeline.llm.prompts import load_prompt
from radvlm_pipeline.llm.runner import Runner
from radvlm_pipeline.schema import CHEXPERT_LABELS, CONVERSATIONS_SCHEMA, VIEWS_FRONTAL

PROMPT = load_prompt("conversation")
STANDARD_SOURCE = "mimic_cxr"
GROUNDED_SOURCES = ("ms_cxr", "padchest_gr")
# MS-CXR annotates MIMIC-CXR images: where it lacks a report or labels of its own, MIMIC-CXR's serve.
SHARED_STUDIES = {"ms_cxr": STANDARD_SOURCE}
STANDARD, GROUNDED = "standard", "grounded"
MIN_ROUNDS, MAX_ROUNDS = 5, 10
DEFAULT_MAX_ATTEMPTS = 3
NOT_GIVEN = "not given"

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


# Validation ----------------------------------------------------------------------------------------


class InvalidConversation(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_ROLE_NAMES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}


def parse_conversation(
    text: str | None, finish_reason: str | None, allowed_boxes: set[str], grounded: bool
) -> list[dict]:
    """The turns as ``{"from": "human"|"gpt", "value": str}``, or InvalidConversation with the reason."""
    if finish_reason == "length":
        raise InvalidConversation("truncated", "the answer hit max_tokens and was cut off")
    stripped = (text or "").strip()
    fenced = _FENCE.match(stripped)
    try:
        turns = json.loads(fenced.group(1) if fenced else stripped)
    except json.JSONDecodeError as exc:
        raise InvalidConversation("invalid_json", f"the answer is not JSON: {exc}") from None
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise InvalidConversation("not_a_list_of_turns", "the answer is not a JSON list of turn objects")
    normalised = []
    for index, turn in enumerate(turns):
        role = _ROLE_NAMES.get(str(turn.get("from", "")).lower())
        value = turn.get("value")
        if role is None or not isinstance(value, str) or not value.strip():
            raise InvalidConversation(
                "bad_turn", f"turn {index + 1} lacks a known 'from' or a non-empty 'value'"
            )
        if role != ("human" if index % 2 == 0 else "gpt"):
            raise InvalidConversation("turns_not_alternating", f"turn {index + 1} is '{role}' out of order")
        if "<image>" in value:
            raise InvalidConversation("image_token", f"turn {index + 1} contains '<image>'")
        normalised.append({"from": role, "value": value.strip()})
    rounds, odd = divmod(len(normalised), 2)
    if odd or not MIN_ROUNDS <= rounds <= MAX_ROUNDS:
        raise InvalidConversation(
            "wrong_length",
            f"{len(normalised)} turns; expected {2 * MIN_ROUNDS}-{2 * MAX_ROUNDS} "
            "alternating turns ending with the assistant",
        )
    cited = {format_box(box) for turn in normalised for box in parse_boxes(turn["value"])}
    unknown = sorted(cited - allowed_boxes)
    if unknown:
        raise InvalidConversation(
            "unknown_box", f"coordinates {', '.join(unknown)} were not among the boxes given"
        )
    if grounded and not cited:
        raise InvalidConversation(
            "no_box_cited", "a grounded conversation must answer at least one 'where' with a box"
        )
    return normalised


# The offline composer ------------------------------------------------------------------------------


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


def offline_rule(item: PromptItem) -> str:
    return compose_conversation(item.context, item.seed)


# Facts from the source tables ---------------------------------------------------------------------


def _abnormalities(label_row: Mapping | None) -> tuple[str, ...] | None:
    if label_row is None:
        return None
    return tuple(name for name in CHEXPERT_LABELS if name != "No Finding" and label_row.get(name) is True)


def _index(frame: pl.DataFrame | None, column: str) -> dict[str, dict]:
    """First row per non-null value of ``column``."""
    if frame is None or frame.is_empty():
        return {}
    rows: dict[str, dict] = {}
    for row in frame.filter(pl.col(column).is_not_null()).iter_rows(named=True):
        rows.setdefault(row[column], row)
    return rows


def _pick_frontal_per_study(images: pl.DataFrame) -> dict[str, dict]:
    """One image per study: PA before AP, then the smallest image id (stable across runs)."""
    frontal = images.filter(pl.col("view").is_in(list(VIEWS_FRONTAL)))
    ordered = frontal.sort([pl.col("view") != "PA", "image_id"])
    return _index(ordered, "study_id")


def standard_facts(
    clean_reports: pl.DataFrame, images: pl.DataFrame, labels: pl.DataFrame, backend: str
) -> tuple[list[ImageFacts], list[dict]]:
    """One ImageFacts per MIMIC-CXR report with current findings; the other reports as quarantine rows."""
    image_of_study = _pick_frontal_per_study(images)
    labels_of_study = _index(labels, "study_id")
    facts, quarantine = [], []
    for row in clean_reports.filter(pl.col("source") == STANDARD_SOURCE).iter_rows(named=True):
        if row["status"] != STATUS_OK:
            if row["status"] == STATUS_FAILED:
                reason, detail = "report_cleaning_failed", "prior-study removal failed (see its quarantine)"
            else:
                reason, detail = (
                    "no_current_findings",
                    "after prior-study removal nothing about the image is left",
                )
            quarantine.append(quarantine_row(row, reason, None, backend, detail))
            continue
        image = image_of_study.get(row["study_id"])
        if image is None:
            quarantine.append(
                quarantine_row(
                    row,
                    "no_frontal_image",
                    None,
                    backend,
                    f"study {row['study_id']} has no PA/AP image in the images table",
                )
            )
            continue
        facts.append(
            ImageFacts(
                source=STANDARD_SOURCE,
                image_id=image["image_id"],
                study_id=row["study_id"],
                split=image["split"],
                kind=STANDARD,
                report=row["report_clean"],
                abnormalities=_abnormalities(labels_of_study.get(row["study_id"])),
                view=image["view"],
                sex=image["sex"],
            )
        )
    return facts, quarantine


def grounded_facts(
    source: str,
    tables: Mapping[str, pl.DataFrame],
    fallback_reports: pl.DataFrame | None,
    fallback_labels: pl.DataFrame | None,
    backend: str,
) -> tuple[list[ImageFacts], list[dict]]:
    """One ImageFacts per image of ``source`` with phrase boxes; boxes of unknown images are quarantined.

    The report is the source's own (per image, else per study), else the cleaned report of the study the
    image shares with MIMIC-CXR, else the phrases themselves; labels likewise, else the boxes' categories.
    """
    images = _index(tables["images"], "image_id")
    own_reports = (_index(tables["reports"], "image_id"), _index(tables["reports"], "study_id"))
    own_labels = (_index(tables["labels"], "image_id"), _index(tables["labels"], "study_id"))
    shared_reports = (
        _index(fallback_reports.filter(pl.col("status") == STATUS_OK), "study_id")
        if fallback_reports is not None
        else {}
    )
    shared_labels = _index(fallback_labels, "study_id")
    phrases = tables["boxes"].filter(pl.col("kind") == "phrase").sort("box_id")
    facts, quarantine = [], []
    for (image_id,), boxes in phrases.group_by("image_id", maintain_order=True):
        image = images.get(image_id)
        if image is None:
            quarantine.append(
                quarantine_row(
                    {"source": source, "image_id": image_id},
                    "image_not_found",
                    None,
                    backend,
                    f"phrase boxes refer to image {image_id}, which is not in the images table",
                )
            )
            continue
        observations: dict[str, list[Box]] = {}
        for row in boxes.iter_rows(named=True):
            observations.setdefault(row["label"], []).append((row["x1"], row["y1"], row["x2"], row["y2"]))
        study = image["study_id"]
        report_row = own_reports[0].get(image_id) or own_reports[1].get(study)
        label_row = own_labels[0].get(image_id) or own_labels[1].get(study) or shared_labels.get(study)
        if report_row and report_row["report"]:
            report = report_row["report"]
        elif study in shared_reports:
            report = shared_reports[study]["report_clean"]
        else:
            report = " ".join(phrase.rstrip(".") + "." for phrase in observations)
        categories = tuple(sorted({c for c in boxes["category"].to_list() if c}))
        facts.append(
            ImageFacts(
                source=source,
                image_id=image_id,
                study_id=study,
                split=image["split"],
                kind=GROUNDED,
                report=report,
                abnormalities=_abnormalities(label_row) if label_row else (categories or None),
                view=image["view"],
                sex=image["sex"],
                observations=tuple((phrase, tuple(bs)) for phrase, bs in observations.items()),
            )
        )
    return facts, quarantine


# The stage -----------------------------------------------------------------------------------------


def synthesise(
    facts: Sequence[ImageFacts], run: Runner, backend: str, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> tuple[list[dict], list[dict], UsageStats, Counter]:
    """Ask for every conversation; re-ask the invalid ones with seed 1, 2, ... up to ``max_attempts``.

    Returns (conversation rows, quarantine rows, usage, how many conversations each attempt number
    produced). A call that failed outright is quarantined at once: another seed would not help it.
    """
    rows, quarantine, stats, valid_at_attempt = [], [], UsageStats(), Counter()
    pending = list(facts)
    for seed in range(max_attempts):
        if not pending:
            break
        prompt_run = run(PROMPT, [f.item(seed) for f in pending], offline=offline_rule)
        stats.add(prompt_run.stats)
        retry = []
        for fact, result in zip(pending, prompt_run.results):
            row = {
                "source": fact.source,
                "study_id": fact.study_id,
                "image_id": fact.image_id,
                "split": fact.split,
            }
            if result.status == FAILED:
                quarantine.append(quarantine_row(row, f"call_{result.error_kind}", result, backend))
                continue
            try:
                turns = parse_conversation(
                    result.text, result.finish_reason, fact.allowed_boxes(), fact.kind == GROUNDED
                )
            except InvalidConversation as invalid:
                if seed + 1 < max_attempts:
                    retry.append(fact)
                else:
                    quarantine.append(
                        quarantine_row(
                            row,
                            invalid.reason,
                            result,
                            backend,
                            f"{invalid.detail} (after {max_attempts} attempts)",
                        )
                    )
                continue
            valid_at_attempt[seed + 1] += 1
            rows.append(
                {
                    **row,
                    "kind": fact.kind,
                    "conversation": turns,
                    "cache_key": result.cache_key,
                    "backend": backend,
                }
            )
        pending = retry
    return rows, quarantine, stats, valid_at_attempt


def _sample_cells(fact: ImageFacts, conversation: list[dict]) -> tuple[str, str]:
    facts_text = "\n".join(f"{name}: {value}" for name, value in fact.fields().items())
    dialogue = "\n".join(f"**{turn['from']}**: {turn['value']}" for turn in conversation[:6])
    return facts_text, dialogue


def build_conversations(
    source_tables: Mapping[str, Mapping[str, pl.DataFrame]],
    clean_reports: pl.DataFrame,
    run: Runner,
    backend: str,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> StageOutput:
    """Standard and grounded conversations for every split. ``source_tables[source][table]`` holds the
    canonical tables of ``mimic_cxr`` and of whichever grounded sources are present."""
    mimic = source_tables[STANDARD_SOURCE]
    facts, quarantine = standard_facts(clean_reports, mimic["images"], mimic["labels"], backend)
    mimic_clean = clean_reports.filter(pl.col("source") == STANDARD_SOURCE)
    for source in GROUNDED_SOURCES:
        if source not in source_tables:
            continue
        shared = SHARED_STUDIES.get(source)
        found, rejected = grounded_facts(
            source,
            source_tables[source],
            mimic_clean if shared else None,
            mimic["labels"] if shared else None,
            backend,
        )
        facts += found
        quarantine += rejected
    inputs = len(facts) + len(quarantine)
    rows, failed, stats, valid_at_attempt = synthesise(facts, run, backend, max_attempts)
    quarantine += failed
    order = ["source", "study_id", "image_id"]  # one order whatever attempt each conversation needed
    table = pl.DataFrame(rows, schema=CONVERSATIONS_SCHEMA, orient="row").sort(order, nulls_last=True)
    quarantine_frame = quarantine_table(quarantine).sort(order, nulls_last=True)
    by_id = {f.item_id: f for f in facts}
    samples = []
    for kind in (STANDARD, GROUNDED):  # a few of each kind side by side with their facts
        for row in [r for r in rows if r["kind"] == kind][:3]:
            samples.append(_sample_cells(by_id[f"{row['source']}/{row['image_id']}"], row["conversation"]))
    counts = Counter((r["kind"], r["split"]) for r in rows)
    summary = {
        "inputs": inputs,
        "conversations": {f"{kind}/{split}": n for (kind, split), n in sorted(counts.items())},
        "quarantined_by_reason": dict(sorted(Counter(q["reason"] for q in quarantine).items())),
        "valid_at_attempt": {str(k): v for k, v in sorted(valid_at_attempt.items())},
        "mean_rounds": round(sum(len(r["conversation"]) for r in rows) / (2 * len(rows)), 2) if rows else 0.0,
    }
    return StageOutput(
        table,
        quarantine_frame,
        stats,
        summary,
        sample_markdown(("facts given", "conversation (first 3 rounds)"), samples),
    )
