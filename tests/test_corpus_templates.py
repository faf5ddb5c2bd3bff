"""The phrasings: enough of them per task, and every placeholder one the task's builder fills."""

import os
import re
import subprocess
import sys
from dataclasses import replace

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


def test_fingerprint_changes_when_a_phrasing_is_edited_or_added(monkeypatch):
    before = templates_fingerprint()
    edited = replace(REPORT, questions=(REPORT.questions[0] + " Be brief.", *REPORT.questions[1:]))
    monkeypatch.setitem(TEMPLATE_SETS, REPORT.name, edited)
    after_edit = templates_fingerprint()
    added = replace(
        edited, answers={**edited.answers, "report": (*edited.answers["report"], "Findings: {report}")}
    )
    monkeypatch.setitem(TEMPLATE_SETS, REPORT.name, added)
    assert len({before, after_edit, templates_fingerprint()}) == 3


def test_fingerprint_is_the_same_in_another_process():
    """Recorded in each partition's manifest and compared across builds: no hash() or set order in it."""
    code = (
        "from radvlm_pipeline.corpus.templates import templates_fingerprint; print(templates_fingerprint())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == templates_fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", templates_fingerprint())
