"""Abnormality classification: which of the 14 CheXpert labels an answer names, and F1 per label.

The paper extracts labels from the answer by keyword matching. Its code checks whether each label's name
is a substring of the answer, so "no pneumothorax" counts as a pneumothorax and "effusion" alone counts
as nothing. We match synonyms on word boundaries and drop negated mentions (a light NegEx: a cue such as
"no", "without" or "negative for" negates the rest of its clause, a phrase such as "is not seen" or
"has resolved" negates what comes before it in the clause), and report the substring variant beside it
so the two can be compared on the same answers. As in NegEx, pseudo-negations hold a cue but negate
nothing: "no interval change in the moderate cardiomegaly" reports a cardiomegaly, so phrases such as
"no change", "not significantly changed" or "no worsening of" are taken out before the cues are sought.

F1 follows scikit-learn's convention with ``zero_division=0``: a label that is neither present nor
predicted scores 0, which is what the paper's macro average does. Because that caps the macro score
below 100 whenever a label is missing from the evaluation set, the macro over labels that occur is
reported too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from radvlm_pipeline.schema import CHEXPERT_LABELS

NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"

# Lower-case phrases (regular expressions, matched on word boundaries) that name each label.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "Atelectasis": (r"atelecta\w*", r"(?:lobar|lobe|segmental) collapse", r"collapsed? (?:lung|lobe)"),
    "Cardiomegaly": (
        r"cardiomegaly",
        r"enlarged (?:heart|cardiac silhouette)",
        r"cardiac enlargement",
        r"(?:heart|cardiac silhouette) is enlarged",
        r"enlargement of the (?:heart|cardiac silhouette)",
    ),
    "Consolidation": (r"consolidat\w*",),
    "Edema": (r"o?edema", r"(?:pulmonary|vascular) congestion", r"heart failure"),
    "Enlarged Cardiomediastinum": (
        r"enlarged cardiomediastinum",
        r"(?:widened|widening of the|enlarged) mediastinum",
        r"mediastinal (?:widening|enlargement)",
        r"enlarged cardiomediastinal silhouette",
        r"cardiomediastinal enlargement",
    ),
    "Fracture": (r"fractures?", r"fractured"),
    "Lung Lesion": (r"lung lesions?", r"pulmonary lesions?", r"nodules?", r"nodular", r"mass(?:es)?"),
    "Lung Opacity": (r"lung opacit(?:y|ies)", r"opacit(?:y|ies)", r"opacification", r"infiltrates?"),
    "Pleural Effusion": (r"pleural effusions?", r"effusions?"),
    "Pleural Other": (
        r"pleural other",
        r"pleural thickening",
        r"pleural plaques?",
        r"fibrothorax",
        r"pleural scar\w*",
    ),
    "Pneumonia": (r"pneumonias?", r"pneumonic"),
    "Pneumothorax": (r"pneumothora(?:x|ces)",),
    "Support Devices": (
        r"support devices?",
        r"tubes?",
        r"catheters?",
        r"pacemakers?",
        r"picc",
        r"central (?:venous )?lines?",
        r"port-?a-?cath",
        r"stents?",
        r"pacer",
        r"(?:sternotomy|sternal) wires?",
        r"drains?",
        r"icd",
    ),
    # Phrases that say the image is normal: matched as a whole, never negated by their own "no".
    NO_FINDING: (
        r"no findings?",
        r"no (?:acute |significant |other )?abnormalit(?:y|ies)",
        r"no abnormal findings?",
        r"nothing abnormal",
        r"(?:looks|appears) normal",
        r"no acute (?:cardiopulmonary|intrathoracic) (?:process|abnormality|disease|findings?)",
        r"normal (?:chest|study|radiograph|x-ray|cxr)",
        r"no pathology",
        r"unremarkable (?:chest|study|radiograph)",
    ),
}

# Cues that negate what follows them in the clause ...
_NEGATION_BEFORE = (
    r"no",
    r"not",
    r"without",
    r"negative for",
    r"free of",
    r"absence of",
    r"rules? out",
    r"ruled out",
    r"clear of",
    r"none",
)
# ... and phrases that negate what precedes them ("pneumothorax is not seen").
_NEGATION_AFTER = (
    r"not (?:seen|identified|present|visible|evident|appreciated|demonstrated|noted)",
    r"(?:is|are|was|were) (?:absent|excluded|ruled out)",
    r"(?:has|have) resolved",
    r"resolved",
)
# Pseudo-negations: they hold a cue ("no", "not", "without") but describe change over time of a finding
# that is there ("no interval change in the effusion", "the opacity has not improved").
_PSEUDO_NEGATION = (
    r"no (?:significant |definite |appreciable |substantial |suspicious |other )?(?:interval )?changes?",
    r"no (?:significant |interval )?(?:increase|decrease|worsening|improvement|progression)",
    r"not (?:significantly |substantially |appreciably |much )?"
    r"(?:changed|increased|decreased|worsened|improved|progressed)",
    r"without (?:significant |appreciable |interval )*change",
    r"not only",
)
# A negation's scope ends at the end of a clause: punctuation or a contrasting conjunction.
_CLAUSE_BREAK = re.compile(r"[.;:!?\n]|\b(?:but|however|although|though|except|while|whereas|yet)\b")
_NEGATION_BEFORE_PATTERN = re.compile(r"\b(?:" + "|".join(_NEGATION_BEFORE) + r")\b")
_NEGATION_AFTER_PATTERN = re.compile(r"\b(?:" + "|".join(_NEGATION_AFTER) + r")\b")
_PSEUDO_NEGATION_PATTERN = re.compile(r"\b(?:" + "|".join(_PSEUDO_NEGATION) + r")\b")
_LABEL_PATTERNS = {
    label: re.compile(r"\b(?:" + "|".join(phrases) + r")\b") for label, phrases in SYNONYMS.items()
}


def _clauses(text: str) -> list[str]:
    return [clause for clause in _CLAUSE_BREAK.split(text.lower()) if clause and clause.strip()]


def _negation_cues(clause: str) -> str:
    """The clause with its pseudo-negations blanked out, same length, so cue positions stay comparable
    with the label matches found in the clause itself."""
    return _PSEUDO_NEGATION_PATTERN.sub(lambda match: " " * len(match.group()), clause)


def labels_from_text(text: str | None) -> set[str]:
    """The labels an answer affirms: synonym matches outside negation scope.

    "No Finding" follows the CheXpert labeller's rule: it holds when no pathology (anything but support
    devices) is affirmed and the answer either says the image is normal or names only support devices.
    """
    found: set[str] = set()
    for clause in _clauses(text or ""):
        normal = _LABEL_PATTERNS[NO_FINDING].search(clause)
        if normal:
            found.add(NO_FINDING)
        cues = _negation_cues(clause)
        before = _NEGATION_BEFORE_PATTERN.search(cues)
        negated_from = before.start() if before else len(clause)
        after = [match.start() for match in _NEGATION_AFTER_PATTERN.finditer(cues)]
        negated_until = after[-1] if after else -1
        for label, pattern in _LABEL_PATTERNS.items():
            if label == NO_FINDING:
                continue
            for match in pattern.finditer(clause):
                negated = match.start() >= negated_from or match.start() < negated_until
                inside_normal_phrase = normal is not None and normal.start() <= match.start() < normal.end()
                if not negated and not inside_normal_phrase:
                    found.add(label)
                    break
    if found - {NO_FINDING, SUPPORT_DEVICES}:
        found.discard(NO_FINDING)
    elif SUPPORT_DEVICES in found:
        found.add(NO_FINDING)
    return found


def labels_by_substring(text: str | None, labels: Sequence[str] = CHEXPERT_LABELS) -> set[str]:
    """The paper's code: a label is predicted when its name occurs anywhere in the lower-cased answer."""
    lowered = (text or "").lower()
    return {label for label in labels if label.lower() in lowered}


def label_matrix(label_sets: Iterable[Iterable[str]], labels: Sequence[str] = CHEXPERT_LABELS) -> np.ndarray:
    """(samples, labels) 0/1 matrix; names are compared case-insensitively."""
    index = {label.lower(): position for position, label in enumerate(labels)}
    rows = []
    for label_set in label_sets:
        row = np.zeros(len(labels), dtype=bool)
        for label in label_set or ():
            position = index.get(str(label).lower())
            if position is not None:
                row[position] = True
        rows.append(row)
    return np.array(rows, dtype=bool).reshape(-1, len(labels))


@dataclass(frozen=True)
class ClassificationScores:
    labels: tuple[str, ...]
    f1: np.ndarray  # per label, 0-1
    precision: np.ndarray
    recall: np.ndarray
    support: np.ndarray  # ground-truth positives per label
    macro_f1: float  # over all labels (the paper's number)
    macro_f1_supported: float | None  # over labels with at least one positive
    micro_f1: float


def f1_scores(
    truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str] = CHEXPERT_LABELS
) -> ClassificationScores:
    tp = (truth & predicted).sum(axis=0).astype(np.float64)
    fp = (~truth & predicted).sum(axis=0).astype(np.float64)
    fn = (truth & ~predicted).sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    support = truth.sum(axis=0)
    total = 2 * tp.sum() + fp.sum() + fn.sum()
    return ClassificationScores(
        labels=tuple(labels),
        f1=f1,
        precision=precision,
        recall=recall,
        support=support,
        macro_f1=float(f1.mean()) if len(f1) else 0.0,
        macro_f1_supported=float(f1[support > 0].mean()) if (support > 0).any() else None,
        micro_f1=float(2 * tp.sum() / total) if total > 0 else 0.0,
    )


def score_classification(
    answers: Sequence[str | None], truth_labels: Sequence[Iterable[str] | None]
) -> tuple[ClassificationScores, ClassificationScores, list[set[str]]]:
    """(keyword-with-negation scores, substring scores, labels extracted per answer)."""
    truth = label_matrix(truth_labels)
    extracted = [labels_from_text(answer) for answer in answers]
    keyword = f1_scores(truth, label_matrix(extracted))
    substring = f1_scores(truth, label_matrix(labels_by_substring(answer) for answer in answers))
    return keyword, substring, extracted
