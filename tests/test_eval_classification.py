"""Classification: labels read from answer text (synonyms, negation), per-label and macro F1."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from radvlm_pipeline.corpus.engine import display_label
from radvlm_pipeline.corpus.templates import CLASSIFICATION
from radvlm_pipeline.evaluation.classification import (
    f1_scores,
    label_matrix,
    labels_by_substring,
    labels_from_text,
    score_classification,
)
from radvlm_pipeline.schema import CHEXPERT_LABELS


@pytest.mark.parametrize(
    "text, expected",
    [
        ("No pneumothorax or pleural effusion.", set()),
        ("There is cardiomegaly but no effusion.", {"Cardiomegaly"}),
        ("Pneumothorax is not seen. Small left effusion.", {"Pleural Effusion"}),
        ("Pneumonia has resolved; mild pulmonary edema.", {"Edema"}),
        ("The lungs are clear without consolidation; the heart is enlarged.", {"Cardiomegaly"}),
        ("Enlarged cardiac silhouette and a right PICC line.", {"Cardiomegaly", "Support Devices"}),
        ("A 1 cm nodule in the right upper lobe.", {"Lung Lesion"}),
        ("Bibasilar opacities, likely atelectasis.", {"Lung Opacity", "Atelectasis"}),
        ("I see no abnormalities on this chest X-ray.", {"No Finding"}),
        ("The image shows support devices.", {"Support Devices", "No Finding"}),
        ("No acute cardiopulmonary process, but a rib fracture.", {"Fracture"}),
        # pseudo-negations: a cue word that describes change, not absence
        ("No interval change in the moderate cardiomegaly.", {"Cardiomegaly"}),
        ("No significant change in the bibasilar atelectasis; no pneumothorax.", {"Atelectasis"}),
        ("Not significantly changed moderate cardiomegaly.", {"Cardiomegaly"}),
        ("Without interval change, the right lower lobe opacity persists.", {"Lung Opacity"}),
        ("No worsening of the pulmonary edema.", {"Edema"}),
        ("No change in cardiomegaly, no effusion.", {"Cardiomegaly"}),  # the second "no" still negates
        ("No interval change. No pneumothorax.", set()),
        ("No enlargement of the heart.", set()),  # a true negation
        ("", set()),
        (None, set()),
    ],
)
def test_labels_from_text(text, expected):
    assert labels_from_text(text) == expected


def test_substring_variant_is_the_papers_code():
    text = "No pneumothorax. Small effusion."
    assert labels_by_substring(text) == {"Pneumothorax"}  # negation ignored, "effusion" alone unmatched
    assert labels_from_text(text) == {"Pleural Effusion"}


def test_f1_per_label_and_macro_hand_computed():
    labels = ("A", "B", "C")
    truth = label_matrix([["A"], ["A", "B"], [], ["B"]], labels)
    predicted = label_matrix([["A"], ["B"], ["B"], []], labels)
    scores = f1_scores(truth, predicted, labels)
    # A: tp 1, fn 1 -> F1 2/3; B: tp 1, fp 1, fn 1 -> 1/2; C: no support, no prediction -> 0 (zero_division=0)
    np.testing.assert_allclose(scores.f1, [2 / 3, 1 / 2, 0.0])
    assert scores.macro_f1 == pytest.approx((2 / 3 + 1 / 2) / 3)
    assert scores.macro_f1_supported == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert scores.micro_f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert scores.support.tolist() == [2, 2, 0]


def _readable(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def test_corpus_classification_answers_read_back_as_their_labels():
    """Every answer template of the corpus, filled with label sets, reads back as exactly those labels."""
    pathologies = [label for label in CHEXPERT_LABELS if label not in ("No Finding", "Support Devices")]
    label_sets = [[label] for label in CHEXPERT_LABELS if label != "No Finding"]
    label_sets += [list(pair) for pair in itertools.combinations(pathologies, 2)][::7]
    for template in CLASSIFICATION.answers["findings"]:
        for labels in label_sets:
            text = template.format(findings=_readable([display_label(label) for label in labels]))
            expected = set(labels) | ({"No Finding"} if labels == ["Support Devices"] else set())
            assert labels_from_text(text) == expected, text
    for template in CLASSIFICATION.answers["none"]:
        assert labels_from_text(template) == {"No Finding"}, template


def test_oracle_scores_100_when_every_label_occurs():
    truth = [[label] for label in CHEXPERT_LABELS if label != "No Finding"] + [["No Finding"]]
    answers = [f"The image shows {display_label(labels[0])}." for labels in truth[:-1]]
    answers.append("I see no abnormalities on this chest X-ray.")
    truth[truth.index(["Support Devices"])] = ["Support Devices", "No Finding"]  # CheXpert's rule
    keyword, substring, _ = score_classification(answers, truth)
    assert keyword.macro_f1 == 1.0 and keyword.micro_f1 == 1.0
    assert substring.macro_f1 < 1.0  # the substring variant misses "No Finding" in "no abnormalities"
