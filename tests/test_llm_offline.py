"""The LLM stages' logic without any endpoint: offline rules, validation, prompts, keys, governance."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import polars as pl
import pytest
from llm_tables import SOURCE_TABLES, all_reports

from radvlm_pipeline.boxes import format_box
from radvlm_pipeline.llm import (
    GovernanceError,
    LLMSettings,
    PromptItem,
    PromptTemplate,
    conversations,
    load_prompt,
    offline_rules,
    prior_removal,
    run_prompts,
)
from radvlm_pipeline.llm.attempts import RejectedAnswer
from radvlm_pipeline.llm.calls import LLMResult, UsageStats, cache_key
from radvlm_pipeline.llm.conversation_facts import grounded_facts, standard_facts
from radvlm_pipeline.llm.conversation_validation import InvalidConversation, parse_conversation
from radvlm_pipeline.llm.conversation_vocabulary import ImageFacts
from radvlm_pipeline.llm.governance import check_endpoint_approval
from radvlm_pipeline.llm.offline_rules import NOTHING_LEFT
from radvlm_pipeline.llm.prior_removal_checks import check_answer
from radvlm_pipeline.llm.runner import pending_call
from radvlm_pipeline.schema import CLEAN_REPORTS_SCHEMA, CONVERSATIONS_SCHEMA

OFFLINE = LLMSettings()


def offline_run(template, items, offline=None):
    return run_prompts(OFFLINE, None, template, items, offline)  # the offline backend never opens the cache


def source_frames():
    return {
        key: {t: getattr(build(), t) for t in ("images", "reports", "labels", "boxes")}
        for key, build in SOURCE_TABLES.items()
    }


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (
            "Compared with the prior radiograph, there is a new moderate left pleural effusion. No pneumothorax.",
            "There is a moderate left pleural effusion. No pneumothorax.",
        ),
        ("Stable mild cardiomegaly. The right opacity has resolved.", "Mild cardiomegaly."),
        ("As before, there is cardiomegaly. The cardiomegaly is slightly larger.", "There is cardiomegaly."),
        ("Lungs are clear. Findings were discussed with Dr. ___ by telephone at 10:15.", "Lungs are clear."),
        ("No significant interval change since the study of ___.", "None"),
        ("FINDINGS: Small right effusion since the prior study.", "Small right effusion."),
    ],
)
def test_offline_prior_removal_rules(report, expected):
    assert offline_rules.remove_prior_mentions_by_rules(report) == expected


def test_sentences_keep_abbreviations_and_list_numbers_together():
    text = "1. Small effusion. Dr. ___ was paged. Heart size is 2.5 cm larger."
    assert offline_rules.split_sentences(text) == [
        "1. Small effusion.",
        "Dr. ___ was paged.",
        "Heart size is 2.5 cm larger.",
    ]


def test_every_report_comes_out_once_with_status_and_failures_quarantined():
    reports = all_reports()
    failing = {"mimic_cxr/s50000002/"}

    def run_with_one_failure(template, items, offline=None):
        result = offline_run(template, items, offline)
        result.results = [
            replace(r, status="failed", text=None, error_kind="timeout", error="timed out")
            if r.item_id in failing
            else r
            for r in result.results
        ]
        return result

    output = prior_removal.remove_priors(reports, run_with_one_failure, "offline-rules")
    assert output.table.schema == CLEAN_REPORTS_SCHEMA
    assert output.table.height == reports.height
    statuses = dict(zip(output.table["study_id"], output.table["status"]))
    assert statuses["s50000003"] == "nothing_left" and statuses["s50000002"] == "failed"
    assert output.quarantine.select("study_id", "reason", "detail").row(0) == (
        "s50000002",
        "call_timeout",
        "timed out",
    )
    cleaned = output.table.filter(pl.col("status") == "ok")["report_clean"].to_list()
    assert not any(offline_rules.mentions_prior(text) for text in cleaned)
    assert output.facts["cleaned_with_comparison_words"] == 0
    assert "| report | without priors |" in output.sample_markdown


REPORT = (
    "Compared with the prior radiograph, the endotracheal tube tip lies 4 cm above the carina. "
    "Bilateral pleural effusions, unchanged.\nNo pneumothorax"
)


@pytest.mark.parametrize(
    ("text", "finish", "expected"),
    [
        ("None.", "stop", NOTHING_LEFT),
        ("Answer: No pneumothorax.", "stop", "No pneumothorax."),
        ("There is a bilateral pleural effusion. No pneumothorax", "stop", None),  # ends as the report does
        ("The endotracheal tube tip lies 4 cm above the carina.", "stop", None),
        ('The tube "lies 4 cm above the carina."', "stop", None),
    ],
)
def test_prior_removal_answers_that_only_delete_are_accepted(text, finish, expected):
    answer = check_answer(REPORT, LLMResult("a", "k", "ok", text, finish_reason=finish))
    assert answer == (expected or text)


@pytest.mark.parametrize(
    ("text", "finish", "reason", "detail"),
    [
        ("The endotracheal tube tip lies", "length", "truncated", "max_tokens"),
        ("  ", "stop", "empty_answer", "empty"),
        ("The endotracheal tube tip lies 4 cm above the", "stop", "ends_mid_sentence", "above the'"),
        ("Bilateral pleural effusions, right more than", "stop", "ends_mid_sentence", "right more than'"),
        (
            "Bilateral pleural effusions with pneumonia. No pneumothorax.",
            "stop",
            "words_not_in_report",
            "pneumonia",
        ),
        ("The tube tip lies 6 cm above the carina.", "stop", "words_not_in_report", ": 6"),
    ],
)
def test_prior_removal_answers_cut_off_or_adding_words_are_rejected(text, finish, reason, detail):
    with pytest.raises(RejectedAnswer) as rejected:
        check_answer(REPORT, LLMResult("a", "k", "ok", text, finish_reason=finish))
    assert rejected.value.reason == reason and detail in rejected.value.detail


def test_the_prompts_worked_examples_pass_the_check():
    examples = re.findall(r"Report: (.*?)\nAnswer: (.*?)(?:\n\n|$)", prior_removal.PROMPT.system, re.S)
    assert len(examples) == 4
    for report, answer in examples:
        check_answer(" ".join(report.split()), LLMResult("a", "k", "ok", " ".join(answer.split())))


def test_rejected_prior_removal_answers_are_asked_again_then_quarantined():
    reports = all_reports()
    first = "mimic_cxr/s50000001/"  # its seed-0 answer adds a word; seed 1 is sound
    always = "mimic_cxr/s50000004/"  # every answer stops mid-sentence
    seeds_asked = []

    def run_with_bad_answers(template, items, offline=None):
        seeds_asked.extend((item.item_id, item.seed) for item in items)
        result = offline_run(template, items, offline)
        result.results = [
            replace(r, text=r.text + " Also pneumonia.")
            if (r.item_id == first and item.seed == 0)
            else replace(r, text=r.text.rstrip(".") + " and the")
            if r.item_id == always
            else r
            for r, item in zip(result.results, items)
        ]
        return result

    output = prior_removal.remove_priors(reports, run_with_bad_answers, "offline-rules")
    statuses = dict(zip(output.table["study_id"], output.table["status"]))
    assert statuses["s50000001"] == "ok" and statuses["s50000004"] == "failed"
    assert "pneumonia" not in output.table.filter(pl.col("study_id") == "s50000001")["report_clean"].item()
    assert [seed for item_id, seed in seeds_asked if item_id == first] == [0, 1]
    assert [seed for item_id, seed in seeds_asked if item_id == always] == [0, 1, 2]
    [row] = output.quarantine.filter(pl.col("study_id") == "s50000004").iter_rows(named=True)
    assert row["reason"] == "ends_mid_sentence" and row["detail"].endswith("(after 3 attempts)")
    assert row["raw_text"].endswith(" and the")
    assert output.facts["valid_at_attempt"] == {"1": 7, "2": 1}


def test_offline_conversations_cover_every_input_and_pass_validation():
    output = conversations.build_conversations(
        source_frames(), _clean_reports(), offline_run, "offline-rules"
    )
    assert output.table.schema == CONVERSATIONS_SCHEMA
    # 6 MIMIC-CXR reports + 2 MS-CXR images + 3 PadChest-GR images: each a conversation or quarantined.
    assert output.table.height + output.quarantine.height == output.facts["inputs"] == 11
    assert sorted(output.quarantine["reason"]) == [
        "image_not_found",
        "no_current_findings",
        "no_frontal_image",
    ]
    assert set(output.table["split"]) == {"train", "test"}
    assert output.facts["valid_at_attempt"] == {"1": 8}
    grounded = output.table.filter(pl.col("kind") == "grounded")
    assert sorted(grounded["image_id"]) == ["d-ms-1", "d-ms-2", "pc-1.png", "pc-2.png"]
    pc2 = grounded.filter(pl.col("image_id") == "pc-2.png")["conversation"].item().to_list()
    text = " ".join(turn["value"] for turn in pc2)
    assert format_box((0.15, 0.12, 0.30, 0.25)) in text or format_box((0.70, 0.75, 0.90, 0.92)) in text
    assert all(row["backend"] == "offline-rules" for row in output.table.iter_rows(named=True))
    pc2_facts = grounded.filter(pl.col("image_id") == "pc-2.png")["facts"].item()  # kept for the judge
    assert pc2_facts["observations"].startswith("right apical nodule: [0.15, 0.12, 0.30, 0.25]")
    assert pc2_facts["view"] == "PA" and output.table["facts"].struct.field("report").is_not_null().all()


def test_standard_conversations_are_capped_per_split_before_any_request():
    asked = []

    def counting_run(template, items, offline=None):
        asked.extend(item.item_id for item in items)
        return offline_run(template, items, offline)

    def standard_images(clean, seed=0, run=offline_run):
        plan = conversations.ConversationPlan(standard_caps={"train": 1, "test": 0}, cap_seed=seed)
        output = conversations.build_conversations(source_frames(), clean, run, "offline-rules", plan)
        return output, output.table.filter(pl.col("kind") == "standard")

    clean = _clean_reports()
    output, standard = standard_images(clean, run=counting_run)
    assert standard["split"].to_list() == ["train"]
    assert output.facts["standard_left_out_by_cap"] == {"test": 1, "train": 2}
    assert output.facts["inputs"] == output.table.height + output.quarantine.height + 3
    assert sorted(asked) == sorted(
        f"{r['source']}/{r['image_id']}" for r in output.table.iter_rows(named=True)
    )
    assert output.table.filter(pl.col("kind") == "grounded").height == 4  # grounded ones are not capped
    assert standard_images(clean.reverse())[1]["image_id"].to_list() == standard["image_id"].to_list()
    assert len({standard_images(clean, seed)[1]["image_id"].item() for seed in range(12)}) == 3
    assert conversations.ConversationPlan().standard_caps == {"train": 80_312, "test": 523}


def _clean_reports():
    return prior_removal.remove_priors(all_reports(), offline_run, "offline-rules").table


def test_offline_composer_is_deterministic_valid_for_many_seeds_and_varies_with_seed():
    facts, _ = standard_facts(
        _clean_reports(),
        SOURCE_TABLES["mimic_cxr"]().images,
        SOURCE_TABLES["mimic_cxr"]().labels,
        "offline-rules",
    )
    grounded, _ = grounded_facts("padchest_gr", source_frames()["padchest_gr"], None, None, "offline-rules")
    for fact in facts + grounded:
        texts = [offline_rules.compose_conversation(fact, seed) for seed in range(6)]
        assert texts[0] == offline_rules.compose_conversation(fact, 0)
        assert len(set(texts)) > 1
        for text in texts:
            parse_conversation(text, "stop", fact.allowed_boxes(), fact.kind == "grounded")


def _turns(rounds: int, answer: str = "Fine.") -> list[dict]:
    return [
        t
        for n in range(rounds)
        for t in ({"from": "human", "value": f"Q{n}?"}, {"from": "gpt", "value": answer})
    ]


@pytest.mark.parametrize(
    ("text", "finish", "reason"),
    [
        (json.dumps(_turns(5))[:40], "length", "truncated"),
        ("Sure! Here it is.", "stop", "invalid_json"),
        (json.dumps({"from": "human"}), "stop", "not_a_list_of_turns"),
        (json.dumps(_turns(4)), "stop", "wrong_length"),
        (json.dumps(_turns(11)), "stop", "wrong_length"),
        (json.dumps(_turns(5)[1:] + [{"from": "gpt", "value": "x"}]), "stop", "turns_not_alternating"),
        (json.dumps(_turns(5, "<image> looks fine")), "stop", "image_token"),
        (json.dumps(_turns(5, "It is at [0.10, 0.20, 0.30, 0.40].")), "stop", "unknown_box"),
        (json.dumps(_turns(5, "")), "stop", "bad_turn"),
    ],
)
def test_invalid_conversations_are_rejected_with_a_reason(text, finish, reason):
    with pytest.raises(InvalidConversation) as raised:
        parse_conversation(text, finish, {"[0.50, 0.50, 0.90, 0.90]"}, grounded=False)
    assert raised.value.reason == reason


def test_valid_conversation_accepts_fences_role_aliases_and_given_boxes():
    turns = [
        {"from": "user", "value": "Where?"},
        {"from": "assistant", "value": "At [0.5, 0.5, 0.9, 0.9]."},
    ] + _turns(4)
    parsed = parse_conversation(
        "```json\n" + json.dumps(turns) + "\n```", "stop", {"[0.50, 0.50, 0.90, 0.90]"}, True
    )
    assert (
        parsed[0] == {"from": "human", "value": "Where?"} and parsed[1]["from"] == "gpt" and len(parsed) == 10
    )
    with pytest.raises(InvalidConversation, match="at least one"):
        parse_conversation(json.dumps(_turns(5)), "stop", {"[0.50, 0.50, 0.90, 0.90]"}, grounded=True)


def test_prompt_version_is_the_file_hash_and_the_cache_key_follows_every_input(tmp_path):
    prompt = load_prompt("prior_removal")
    edited = tmp_path / "prior_removal.md"
    edited.write_text(prompt.system + " Be brief.\n--- user ---\n" + prompt.user)
    changed = PromptTemplate.from_file(edited)
    assert changed.version != prompt.version and len(prompt.version) == 16
    assert prompt.messages({"report": "Lungs clear."})[1]["content"] == "Report: Lungs clear.\nAnswer:"
    with pytest.raises(KeyError):
        prompt.messages({})

    settings = LLMSettings(backend="openai", model="m")
    item = PromptItem("x", ("mimic_cxr",), {"report": "Lungs clear."})
    base = pending_call(settings, prompt, item).key
    assert (
        base
        == pending_call(
            replace(settings, api_key="sk-other", base_url="http://elsewhere/v1"), prompt, item
        ).key
    )
    variants = [
        pending_call(replace(settings, model="m2"), prompt, item),
        pending_call(replace(settings, temperature=0.5), prompt, item),
        pending_call(settings, prompt, replace(item, seed=1)),
        pending_call(settings, prompt, replace(item, fields={"report": "Lungs are clear."})),
        pending_call(settings, changed, item),
        pending_call(
            replace(settings, backend="azure", base_url="https://x", azure_api_version="v"), prompt, item
        ),
    ]
    assert len({base, *(v.key for v in variants)}) == 1 + len(variants)
    assert cache_key("k", "m", "t", "v", {"a": 1, "b": 2}, []) == cache_key(
        "k", "m", "t", "v", {"b": 2, "a": 1}, []
    )


def test_governance_refuses_unapproved_credentialed_and_unknown_datasets():
    endpoint = LLMSettings(
        backend="openai", base_url="http://127.0.0.1:9/v1", approved_credentialed_datasets=("mimic_cxr",)
    )
    check_endpoint_approval(endpoint, ["mimic_cxr"])
    check_endpoint_approval(LLMSettings(), ["ms_cxr", "anything"])  # offline: nothing leaves the machine
    with pytest.raises(GovernanceError, match="'chexpert_plus'.*approved_credentialed_datasets"):
        check_endpoint_approval(endpoint, ["mimic_cxr", "chexpert_plus"])
    with pytest.raises(GovernanceError, match="not in the dataset registry"):
        check_endpoint_approval(endpoint, ["my_private_set"])


def test_offline_backend_without_a_rule_fails_honestly():
    run = offline_run(load_prompt("prior_removal"), [PromptItem("x", ("mimic_cxr",), {"report": "Clear."})])
    assert run.results[0].status == "failed" and run.results[0].error_kind == "no_offline_rule"
    assert run.stats.failures_by_kind == {"no_offline_rule": 1}


def test_usage_metadata_prices_each_model_and_the_batch_discount():
    stats = UsageStats(latencies_s=[0.1, 0.2, 0.3, 0.4])
    stats.record_new(
        LLMResult("a", "k", "ok", "x", prompt_tokens=1_000_000, completion_tokens=1_000_000), "gpt-4o-mini"
    )
    stats.record_new(LLMResult("b", "k", "ok", "x", prompt_tokens=1_000_000, origin="batch"), "gpt-4o-mini")
    stats.record_new(LLMResult("c", "k", "ok", "x", prompt_tokens=1_000_000, completion_tokens=10), "gpt-4o")
    prices = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00)}
    metadata = stats.as_metadata(prices, batch_factor=0.5)
    expected = 0.15 + 0.60 + 0.5 * 0.15 + 2.50 + 10 * 10.00 / 1e6
    assert metadata["llm_estimated_cost_usd"] == pytest.approx(expected)
    assert metadata["llm_tokens_in"] == 3_000_000 and metadata["llm_tokens_out"] == 1_000_010
    assert metadata["llm_tokens_by_model"]["gpt-4o"] == {"in": 1_000_000, "out": 10}
    assert metadata["llm_latency_p50_s"] == pytest.approx(0.25)
    assert UsageStats().as_metadata({}, 0.5)["llm_estimated_cost_usd"] == 0.0  # nothing new: nothing paid
    stats.record_new(LLMResult("d", "k", "ok", "x", prompt_tokens=5), "my-model")
    unknown = stats.as_metadata(prices, 0.5)
    assert (
        unknown["llm_estimated_cost_usd"] == "not computed: no price for model 'my-model' in the price table"
    )
    assert UsageStats().as_metadata({}, 0.5)["llm_latency"].startswith("not computed")


def test_empty_inputs_give_empty_tables_with_the_schemas():
    empty_reports = all_reports().clear()
    cleaned = prior_removal.remove_priors(empty_reports, offline_run, "offline-rules")
    assert cleaned.table.schema == CLEAN_REPORTS_SCHEMA and cleaned.table.is_empty()
    frames = {
        key: {name: frame.clear() for name, frame in tables.items()}
        for key, tables in source_frames().items()
    }
    talks = conversations.build_conversations(frames, cleaned.table, offline_run, "offline-rules")
    assert (
        talks.table.schema == CONVERSATIONS_SCHEMA and talks.table.is_empty() and talks.quarantine.is_empty()
    )
    assert talks.sample_markdown.startswith("_no sample")


def test_offline_composer_reaches_five_rounds_from_sparse_facts_and_never_denies_free_text_findings():
    sparse = ImageFacts("mimic_cxr", "d1", "s1", "train", "standard", "Lungs are clear.", None, None, None)
    turns = parse_conversation(offline_rules.compose_conversation(sparse, 0), "stop", set(), grounded=False)
    assert len(turns) == 10
    nodule = ImageFacts(
        "padchest_gr",
        "p1",
        "s1",
        "train",
        "grounded",
        "Right apical nodule.",
        ("nodule",),
        "PA",
        "F",
        (("right apical nodule", ((0.1, 0.1, 0.3, 0.3),)),),
    )
    for seed in range(5):
        text = offline_rules.compose_conversation(nodule, seed)
        parse_conversation(text, "stop", nodule.allowed_boxes(), grounded=True)
        assert "no clear abnormality" not in text.lower() and "do not see signs" not in text
