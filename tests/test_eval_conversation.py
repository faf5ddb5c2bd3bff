"""The conversation judge: prompt, "Overall score: N" parsing, failures counted."""

from __future__ import annotations

import polars as pl
import pytest
from eval_fixtures import CONVERSATION_REFERENCE, eval_rows

from radvlm_pipeline.evaluation.conversation import (
    Round,
    judge_conversations,
    judge_prompt,
    parse_judge_score,
)
from radvlm_pipeline.evaluation.scoring import ScoringSettings, score_conversation
from radvlm_pipeline.schema import CORPUS_SCHEMA, conform


@pytest.mark.parametrize(
    "reply, score",
    [
        ("Round 1 ok.\nOverall score: 7", 7.0),
        ("Overall score: 6/10", 6.0),
        ("**Overall score:** 8", 8.0),
        ("overall score = 4.5 / 10", 4.5),
        ("Overall score: 3\n...\nOverall score: 9", 9.0),  # the final line counts
        ("Overall score: 11", None),
        ("I would give it a seven.", None),
        (None, None),
    ],
)
def test_parse_judge_score(reply, score):
    assert parse_judge_score(reply) == score


def test_judge_prompt_holds_every_round_the_reference_data_and_the_format_line():
    rounds = [Round("Q1?", "E1.", "G1."), Round("Q2?", "E2.", "G2.")]
    prompt = judge_prompt(rounds, CONVERSATION_REFERENCE)
    for text in ("Q1?", "E1.", "G1.", "Q2?", "E2.", "G2.", *CONVERSATION_REFERENCE.values()):
        assert text in prompt
    assert "- View: PA" in prompt and "- Sex: F" in prompt and "not given" not in prompt
    assert prompt.rstrip().endswith("Overall score: <integer from 0 to 10>")
    assert "not recorded for this conversation" in judge_prompt(rounds, None)


def test_the_judge_gets_each_evaluation_rows_reference(tmp_path):
    rows = eval_rows(tmp_path / "data", tmp_path / "storage")["grounded_conversation"]
    eval_set = conform(pl.DataFrame(rows, schema=CORPUS_SCHEMA), CORPUS_SCHEMA)
    answers = pl.DataFrame({"id": eval_set["id"], "answers": [["Yes.", "At the apex."]]})
    prompts = []

    def complete(batch, datasets):
        prompts.extend(batch)
        return ["Overall score: 6"] * len(batch)

    [judge], per_sample = score_conversation(eval_set, answers, ScoringSettings(llm=complete))
    assert judge.value == 6.0 and judge.details["without_reference"] == 0
    assert "- Radiology report: Small left apical pneumothorax." in prompts[0]
    assert (
        "- Selected observations with bounding box coordinates: small left apical pneumothorax: ["
        in prompts[0]
    )
    assert "- List of abnormalities: Pleural Effusion, Pneumothorax" in prompts[0]


def test_judge_mean_counts_failures():
    conversations = [[Round("q", "e", "g")]] * 4
    replies = ["Overall score: 8", "Overall score: 6", "no score here", None]
    value, scores, _ = judge_conversations(
        conversations, [None] * 4, ["mimic_cxr"] * 4, lambda p, d: replies, ""
    )
    assert value.value == pytest.approx(7.0) and value.unit == "/10"
    assert (value.details["parse_failures"], value.details["failed_calls"], value.details["scored"]) == (
        1,
        1,
        2,
    )


def test_judge_with_no_usable_reply_is_not_computed():
    value, _, _ = judge_conversations([[Round("q", "e", "g")]], [None], ["ms_cxr"], lambda p, d: ["?"], "")
    assert not value.is_computed and "1 unparseable" in value.reason


def test_governance_refusal_reports_the_judge_as_not_computed(tmp_path):
    """Credentialed text and an endpoint not approved for it: nothing is sent, the metric says why."""
    from functools import partial

    from radvlm_pipeline.evaluation.llm_calls import llm_completer
    from radvlm_pipeline.llm import LLMSettings, UsageStats, run_prompts

    settings = LLMSettings(
        backend="openai", base_url="http://127.0.0.1:9/v1", model="judge", api_key="unused"
    )
    complete = llm_completer(
        partial(run_prompts, settings, tmp_path / "cache.sqlite"), "judge", "v1", UsageStats()
    )
    value, scores, _ = judge_conversations([[Round("q", "e", "g")]], [None], ["mimic_cxr"], complete, "")
    assert not value.is_computed and value.reason.startswith("governance:") and "mimic_cxr" in value.reason
    assert scores is None
