"""The phrasings: enough of them per task, and every placeholder one the task's builder fills."""

import re

import pytest

from radvlm_pipeline.corpus.templates import (
    CLASSIFICATION,
    DETECTION,
    GROUNDING,
    PHRASE,
    REPORT,
    TEMPLATE_SETS,
    TemplateSet,
    templates_fingerprint,
)


@pytest.mark.parametrize(
    "templates, at_least",
    [(REPORT, 15), (CLASSIFICATION, 11), (GROUNDING, 20), (DETECTION, 10), (PHRASE, 8)],
)
def test_at_least_as_many_question_phrasings_as_the_paper(templates, at_least):
    assert len(templates.questions) >= at_least
    assert len(set(templates.questions)) == len(templates.questions)


def test_grounding_phrase_and_detection_answers_vary_too():
    assert len(GROUNDING.answers["boxes"]) >= 20
    assert len(PHRASE.answers["boxes"]) >= 8
    assert len(DETECTION.answers["findings"]) >= 10 and len(DETECTION.answers["none"]) >= 10


def test_every_answer_that_gives_boxes_has_the_boxes_placeholder():
    for templates in (GROUNDING, PHRASE):
        assert all("{boxes}" in text for text in templates.answers["boxes"])
    assert all("{findings}" in text for text in DETECTION.answers["findings"])
    assert not any("{" in text for text in DETECTION.answers["none"] + CLASSIFICATION.answers["none"])


def test_questions_name_what_to_locate():
    assert all("{target}" in q for q in GROUNDING.questions)
    assert all("{phrase}" in q for q in PHRASE.questions)


def test_an_undeclared_placeholder_is_refused():
    with pytest.raises(ValueError, match="undeclared placeholders"):
        TemplateSet(
            name="bad",
            questions=("Where is {organ}?",),
            answers={"boxes": ("{boxes}",)},
            fields=frozenset({"boxes"}),
        )


def test_no_template_has_stray_braces():
    for templates in TEMPLATE_SETS.values():
        for text in templates.all_texts():
            assert set(re.findall(r"\{(\w+)\}", text)) <= templates.fields
            assert text.count("{") == text.count("}")


def test_fingerprint_is_stable_within_a_process():
    assert templates_fingerprint() == templates_fingerprint()
    assert len(templates_fingerprint()) == 64
