"""The template engine: deterministic choices from ids, readable boxes, and rows in the corpus schema."""

import numpy as np
import polars as pl
import pytest

from radvlm_pipeline.boxes import parse_boxes
from radvlm_pipeline.corpus.engine import (
    BOX_LIST,
    IMAGE_TOKEN,
    Samples,
    assemble,
    box_strings,
    choice_lanes,
    display_label,
    mix,
    readable_list,
    with_image_token,
)
from radvlm_pipeline.corpus.templates import GROUNDING, REPORT
from radvlm_pipeline.schema import CORPUS_SCHEMA, TURN


def grounding_samples(n: int, boxes_per_sample: int = 1, start: int = 0) -> Samples:
    keys = [f"img{i:04d}" for i in range(start, start + n)]
    boxes = [
        [[0.1 + 0.001 * i, 0.2, 0.5, 0.6 + 0.01 * b] for b in range(boxes_per_sample)]
        for i in range(start, start + n)
    ]
    frame = pl.DataFrame(
        {
            "sample_key": keys,
            "split": ["train"] * n,
            "subject_id": [f"p{i % 7}" for i in range(start, start + n)],
            "image_dataset": ["mimic_cxr"] * n,
            "image_path": [f"files/{k}.jpg" for k in keys],
            "source_ids": [[f"image:{k}"] for k in keys],
            "llm_cache_keys": [None] * n,
            "case": ["boxes"] * n,
            "target": ["left lung"] * n,
            "target_boxes": boxes,
            "target_labels": [["left lung"] * boxes_per_sample] * n,
        },
        schema_overrides={"target_boxes": BOX_LIST, "llm_cache_keys": pl.List(pl.String)},
    )
    return Samples(frame)


def build(samples: Samples, **kwargs):
    options = dict(
        task="anatomical_grounding", source="chest_imagenome", purpose="unit", templates=GROUNDING, seed=0
    )
    return assemble(samples, **{**options, **kwargs})


def test_choice_lanes_depend_only_on_seed_purpose_and_key():
    both = choice_lanes(["a", "b"], seed=0, purpose="p")
    alone = choice_lanes(["b"], seed=0, purpose="p")
    assert both.shape == (2, 4) and both.dtype == np.dtype("<u8")
    assert (both[1] == alone[0]).all()
    assert (choice_lanes(["b"], seed=1, purpose="p") != alone).any()
    assert (choice_lanes(["b"], seed=0, purpose="q") != alone).any()


def test_mix_gives_each_repetition_its_own_draw():
    lane = np.array([12345, 12345, 12345], dtype=np.uint64)
    drawn = mix(lane, np.array([0, 1, 2], dtype=np.uint64))
    assert len(set(drawn.tolist())) == 3
    assert (mix(lane, np.zeros(3, dtype=np.uint64)) == drawn[0]).all()


def test_readable_list_joins_like_a_sentence():
    frame = pl.DataFrame({"items": [["a"], ["a", "b"], ["a", "b", "c"], []]})
    assert frame.select(readable_list(pl.col("items")))["items"].to_list() == [
        "a",
        "a and b",
        "a, b and c",
        None,
    ]
    semi = frame.select(readable_list(pl.col("items"), separator="; ", last="; and "))["items"].to_list()
    assert semi[2] == "a; b; and c"


def test_box_strings_use_the_project_box_format():
    series = pl.Series("b", [[[0.1, 0.25, 0.333, 1.0]], None], dtype=BOX_LIST)
    assert box_strings(series).to_list() == [["[0.10, 0.25, 0.33, 1.00]"], None]


@pytest.mark.parametrize(
    "label, shown",
    [
        ("Enlarged PA", "enlarged PA"),
        ("Nodule/Mass", "nodule/mass"),
        ("ILD", "ILD"),
        ("right lung", "right lung"),
        ("Lung Opacity", "lung opacity"),
    ],
)
def test_display_label_lowers_words_but_keeps_acronyms(label, shown):
    assert display_label(label) == shown


def test_image_token_only_at_the_start_of_the_first_turn():
    turns = [
        {"from": "human", "value": "What is this?"},
        {"from": "gpt", "value": "A CXR."},
        {"from": "human", "value": "<image>\nAnd now?"},
        {"from": "gpt", "value": "Same."},
    ]
    frame = pl.DataFrame({"c": [turns]}, schema={"c": pl.List(TURN)})
    values = [t["value"] for t in frame.select(with_image_token(pl.col("c")))["c"][0]]
    assert values == [IMAGE_TOKEN + "What is this?", "A CXR.", "And now?", "Same."]


def test_rows_follow_the_corpus_schema_and_read_well():
    rows = build(grounding_samples(5, boxes_per_sample=2)).rows
    assert rows.schema == CORPUS_SCHEMA
    for row in rows.iter_rows(named=True):
        human, gpt = row["conversation"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        assert human["value"].startswith(IMAGE_TOKEN) and "left lung" in human["value"]
        assert "{" not in human["value"] + gpt["value"]
        assert " and [" in gpt["value"]  # two boxes in one sentence
        assert parse_boxes(gpt["value"]) == [tuple(round(v, 2) for v in box) for box in row["target_boxes"]]
        assert row["turns"] == 1 and row["template_id"].startswith("grounding:q")


def test_same_input_same_rows_and_other_samples_do_not_move_choices():
    first = build(grounding_samples(50)).rows
    assert build(grounding_samples(50)).rows.equals(first)
    larger = build(grounding_samples(80)).rows
    common = larger.join(first.select("id"), on="id", how="semi")
    assert common.equals(first)


def test_templates_are_spread_over_all_phrasings():
    rows = build(grounding_samples(2000)).rows
    questions = rows["template_id"].str.extract(r":q(\d+):").unique()
    answers = rows["template_id"].str.extract(r":a(\d+)$").unique()
    assert questions.len() == len(GROUNDING.questions) and answers.len() == len(GROUNDING.answers["boxes"])


def test_cap_keeps_a_deterministic_subset():
    capped = build(grounding_samples(100), cap=10)
    assert capped.rows.height == 10 and capped.stats["excluded/over_cap"] == 90
    assert build(grounding_samples(100), cap=10).rows.equals(capped.rows)
    assert build(grounding_samples(100), cap=10, seed=1).rows["id"].to_list() != capped.rows["id"].to_list()


def test_repetitions_have_their_own_ids_and_phrasings():
    rows = build(grounding_samples(30), repeat=3).rows
    assert rows.height == 90
    assert set(rows["id"].str.extract(r":(\d+)$").to_list()) == {"0", "1", "2"}
    per_sample = rows.group_by(pl.col("id").str.replace(r":\d+$", "")).agg(pl.col("template_id").n_unique())
    assert per_sample["template_id"].max() > 1


def test_held_out_patients_are_left_out():
    result = build(grounding_samples(14), held_out_subjects=pl.DataFrame({"subject_id": ["p0", "p1"]}))
    assert result.stats["excluded/held_out_patient"] == 4
    assert result.rows.height == 10


def test_a_free_text_value_is_never_expanded_as_a_placeholder():
    samples = grounding_samples(3)
    samples.frame = samples.frame.with_columns(target=pl.lit("mass {boxes}"))
    rows = build(samples).rows
    assert all("mass {boxes}" in row[0]["value"] for row in rows["conversation"].to_list())


def test_options_pick_one_candidate_per_repetition():
    samples = grounding_samples(40).frame.drop("target", "target_boxes", "target_labels")
    regions = ["left lung", "right lung", "trachea"]
    options = pl.DataFrame(
        {
            "sample_key": [k for k in samples["sample_key"] for _ in regions],
            "option_id": [f"{k}_{r}" for k in samples["sample_key"] for r in regions],
            "region": regions * samples.height,
            "width": [0.2 + i / 10 for _ in samples["sample_key"] for i in range(3)],
        }
    )
    option_columns = [
        pl.col("region").alias("target"),
        pl.concat_list(
            pl.concat_arr(
                pl.lit(0.1, dtype=pl.Float64),
                pl.lit(0.1, dtype=pl.Float64),
                "width",
                pl.lit(0.5, dtype=pl.Float64),
            )
        ).alias("target_boxes"),
        pl.concat_list("region").alias("target_labels"),
        pl.concat_list(pl.format("box:{}", pl.col("option_id"))).alias("option_source_ids"),
    ]
    rows = build(Samples(samples, options=options.lazy(), option_columns=option_columns), repeat=2).rows
    assert rows.height == 80
    picked = rows["target_labels"].list.first()
    assert set(picked.to_list()) == set(regions)
    for row in rows.iter_rows(named=True):
        region = row["target_labels"][0]
        assert region in row["conversation"][0]["value"]
        assert row["source_ids"][-1] == f"box:{row['id'].split(':')[1]}_{region}"


def test_unknown_case_is_an_error():
    samples = grounding_samples(2)
    samples.frame = samples.frame.with_columns(case=pl.lit("findings"))
    with pytest.raises(ValueError, match="no answers for cases"):
        build(samples)


def test_report_rows_carry_the_report_verbatim():
    frame = (
        grounding_samples(2)
        .frame.drop("target")
        .with_columns(case=pl.lit("report"), report=pl.lit("No acute findings."))
    )
    rows = build(Samples(frame), task="report_generation", templates=REPORT).rows
    assert [c[1]["value"] for c in rows["conversation"].to_list()] == ["No acute findings."] * 2


def test_no_samples_give_no_rows_in_the_schema():
    result = build(Samples(grounding_samples(3).frame.head(0)), repeat=3, cap=5)
    assert result.rows.height == 0 and result.rows.schema == CORPUS_SCHEMA


def test_a_repeated_sample_key_is_an_error():
    samples = grounding_samples(3)
    samples.frame = pl.concat([samples.frame, samples.frame.head(1)])
    with pytest.raises(ValueError, match="sample keys must be unique"):
        build(samples)
