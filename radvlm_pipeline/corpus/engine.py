"""The one template engine: from task samples to corpus rows, for every task.

A builder (``builders.py``) turns source tables into *samples* (one per image, finding or phrase) with
the values the task's templates need. The engine then, identically for every task:

1. drops samples of held-out patients (those of the evaluation sets);
2. subsamples to the row's cap, keeping the samples whose hash ranks lowest;
3. repeats each sample ``repeat`` times;
4. picks, per repetition, one option where the task has a choice (Chest ImaGenome: the region);
5. picks a question and an answer phrasing, fills the placeholders and writes the conversation.

Every choice comes from ``choice_lanes``: a BLAKE2b hash of (seed, row key, sample key), mixed with the
repetition index. No global random state, so a re-run or a backfill of one partition gives the same rows,
and adding or removing one sample changes no other sample's choices.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from radvlm_pipeline.boxes import format_box
from radvlm_pipeline.corpus.templates import TemplateSet
from radvlm_pipeline.schema import CONVERSATION_FACTS, CORPUS_SCHEMA, TURN

BOX = pl.Array(pl.Float64, 4)
BOX_LIST = pl.List(BOX)
IMAGE_TOKEN = "<image>\n"

# Lanes of the per-sample hash, one per independent choice.
LANE_SUBSAMPLE, LANE_QUESTION, LANE_ANSWER, LANE_OPTION = range(4)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass
class Samples:
    """What a builder hands the engine.

    ``frame``: one row per sample, with ``sample_key`` (unique), ``split``, ``subject_id``,
    ``image_dataset``, ``image_path``, ``source_ids``, ``llm_cache_keys``, ``target_boxes``,
    ``target_labels``, ``case`` and the template fields; LLM tasks carry ``conversation`` and
    ``reference`` (the facts it was written from, for the conversation judge) instead.
    ``options``: for tasks with a per-repetition choice, one row per candidate with ``sample_key`` and
    ``option_id`` (orders the candidates) plus raw columns; ``option_columns`` turn the chosen candidate's
    raw columns into the row's (``target``, ``target_boxes``, ``target_labels``, ``option_source_ids``),
    computed only for chosen candidates. ``skipped``: input rows left out, by reason.
    """

    frame: pl.DataFrame
    options: pl.LazyFrame | None = None
    option_columns: list[pl.Expr] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class Assembled:
    rows: pl.DataFrame  # CORPUS_SCHEMA
    stats: dict[str, int]


def choice_lanes(keys: Sequence[str], seed: int, purpose: str) -> np.ndarray:
    """Four independent 64-bit draws per key, stable across machines, processes and library versions."""
    prefix = f"{seed}\x1f{purpose}\x1f".encode()
    digest = b"".join(hashlib.blake2b(prefix + key.encode(), digest_size=32).digest() for key in keys)
    return np.frombuffer(digest, dtype="<u8").reshape(-1, 4)


def mix(lane: np.ndarray, repetition: np.ndarray) -> np.ndarray:
    """SplitMix64 of (lane + repetition * golden ratio): a fresh draw per repetition of one sample."""
    with np.errstate(over="ignore"):
        x = lane.astype(np.uint64) + repetition.astype(np.uint64) * _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def readable_list(items: pl.Expr, separator: str = ", ", last: str = " and ") -> pl.Expr:
    """``a``, ``a and b``, ``a, b and c``: a list column as one readable phrase."""
    count = items.list.len()
    return (
        pl.when(count <= 1)
        .then(items.list.first())
        .otherwise(
            pl.concat_str([items.list.head(count - 1).list.join(separator), pl.lit(last), items.list.last()])
        )
    )


def box_strings(box_lists: pl.Series) -> pl.Series:
    """Each row's boxes as ``format_box`` strings (the one box text format), list for list.

    Formats the flat array of all boxes, then rebuilds the lists from their offsets (Arrow), which is
    much faster than building a Series from nested Python lists."""
    lengths = box_lists.list.len().fill_null(0).to_numpy()
    flat = box_lists.list.explode(keep_nulls=False, empty_as_null=False)
    texts = pa.array([format_box(box) for box in flat.to_numpy()], type=pa.large_string())
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), type=pa.int64())
    nested = pa.LargeListArray.from_arrays(offsets, texts, mask=pa.array(box_lists.is_null().to_numpy()))
    return pl.Series(box_lists.name, nested).cast(pl.List(pl.String))


_CAPITALISED_WORD = re.compile(r"\b[A-Z][a-z]+\b")


def display_label(label: str) -> str:
    """A label as it reads inside a sentence: capitalised words lowered, acronyms kept ("Enlarged PA" ->
    "enlarged PA", "Nodule/Mass" -> "nodule/mass")."""
    return _CAPITALISED_WORD.sub(lambda m: m.group(0).lower(), label.strip())


def display_labels(labels: pl.Series) -> pl.Series:
    """``display_label`` of a column, computed once per distinct label."""
    mapping = {label: display_label(label) for label in labels.drop_nulls().unique().to_list()}
    return labels.replace_strict(mapping, default=None, return_dtype=pl.String)


def lineage(**ids: pl.Expr) -> pl.Expr:
    """``["image:<id>", "study:<id>", "subject:<id>", ...]``; null ids left out."""
    return pl.concat_list([pl.format(f"{kind}:{{}}", expr) for kind, expr in ids.items()]).list.drop_nulls()


def with_image_token(conversation: pl.Expr) -> pl.Expr:
    """The first human turn starts with ``<image>\\n``; no other turn carries the token."""
    value = pl.element().struct.field("value").str.replace_all(r"\s*<image>\s*", " ").str.strip_chars()
    first = pl.int_range(pl.len()) == 0
    return conversation.list.eval(
        pl.struct(
            pl.element().struct.field("from"),
            pl.when(first).then(pl.lit(IMAGE_TOKEN) + value).otherwise(value).alias("value"),
        )
    )


def alternates_human_gpt(conversation: pl.Expr) -> pl.Expr:
    """True when turns go human, gpt, human, gpt... (even count, no empty value)."""
    expected = pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("human")).otherwise(pl.lit("gpt"))
    roles_ok = conversation.list.eval(pl.element().struct.field("from") == expected).list.all()
    values_ok = conversation.list.eval(
        pl.element().struct.field("value").str.strip_chars().str.len_chars() > 0
    ).list.all()
    count = conversation.list.len()
    return (count >= 2) & (count % 2 == 0) & roles_ok & values_ok


def assemble(
    samples: Samples,
    *,
    task: str,
    source: str,
    purpose: str,
    templates: TemplateSet | None,
    seed: int,
    repeat: int = 1,
    cap: int | None = None,
    held_out_subjects: pl.DataFrame | None = None,
) -> Assembled:
    """Samples -> corpus rows (CORPUS_SCHEMA), sorted by id. ``purpose`` names the draw (a Table 1 row
    key or an evaluation set key) so training and evaluation choices are independent;
    ``held_out_subjects`` (one column ``subject_id``) lists the patients of this source's namespace
    that an evaluation set holds out."""
    frame = samples.frame
    duplicated = frame.filter(pl.col("sample_key").is_duplicated())["sample_key"].unique().sort()
    if duplicated.len():
        raise ValueError(
            f"{purpose}: sample keys must be unique; repeated: {duplicated.head(5).to_list()} "
            "(an upstream table has two rows for one image, study or phrase)"
        )
    stats = {"samples": frame.height, **{f"skipped/{k}": v for k, v in sorted(samples.skipped.items())}}

    if held_out_subjects is not None and frame.height:
        before = frame.height
        frame = frame.join(held_out_subjects, on="subject_id", how="anti")
        stats["excluded/held_out_patient"] = before - frame.height

    lanes = choice_lanes(frame["sample_key"].to_list(), seed, purpose)
    frame = frame.with_columns(
        pl.Series("_subsample", lanes[:, LANE_SUBSAMPLE]),
        pl.Series("_question", lanes[:, LANE_QUESTION]),
        pl.Series("_answer", lanes[:, LANE_ANSWER]),
        pl.Series("_option", lanes[:, LANE_OPTION]),
    )
    if cap is not None and frame.height > cap:
        stats["excluded/over_cap"] = frame.height - cap
        frame = frame.sort("_subsample", "sample_key").head(cap)
    stats["samples_kept"] = frame.height

    frame = frame.join(pl.DataFrame({"_rep": np.arange(repeat, dtype=np.uint64)}), how="cross")
    repetition = frame["_rep"].to_numpy()
    frame = frame.with_columns(
        [
            pl.Series(name, mix(frame[name].to_numpy(), repetition))
            for name in ("_question", "_answer", "_option")
        ]
    )
    if samples.options is not None:
        frame = _pick_options(frame, samples.options, samples.option_columns, stats)

    if templates is None:
        frame = frame.with_columns(
            conversation=with_image_token(pl.col("conversation")),
            template_id=pl.lit(None, dtype=pl.String),
        )
    else:
        frame = _render(frame, templates).with_columns(reference=pl.lit(None, dtype=CONVERSATION_FACTS))

    rows = frame.select(
        id=pl.format("{}:{}:{}", pl.lit(purpose), pl.col("sample_key"), pl.col("_rep")),
        source=pl.lit(source),
        task=pl.lit(task),
        split=pl.col("split"),
        image_dataset=pl.col("image_dataset"),
        image_path=pl.col("image_path"),
        conversation=pl.col("conversation"),
        turns=(pl.col("conversation").list.len() // 2),
        template_id=pl.col("template_id"),
        source_ids=pl.col("source_ids"),
        llm_cache_keys=pl.col("llm_cache_keys"),
        target_boxes=pl.col("target_boxes"),
        target_labels=pl.col("target_labels"),
        reference=pl.col("reference"),
    )
    rows = rows.select([pl.col(name).cast(dtype) for name, dtype in CORPUS_SCHEMA.items()]).sort("id")
    stats["rows"] = rows.height
    return Assembled(rows=rows, stats=stats)


def _pick_options(
    frame: pl.DataFrame, options: pl.LazyFrame, columns: list[pl.Expr], stats: dict[str, int]
) -> pl.DataFrame:
    """Per (sample, repetition): the candidate at ``draw % candidates`` in option_id order. Only each
    sample's option ids are sorted (a list of ~29 for a Chest ImaGenome image), never the millions of
    candidate rows, and ``columns`` are computed for the chosen candidates alone."""
    candidates = options.join(frame.select("sample_key").unique().lazy(), on="sample_key", how="semi")
    ordered = candidates.group_by("sample_key").agg(pl.col("option_id").sort().alias("_option_ids")).collect()
    before = frame.height
    frame = frame.join(ordered, on="sample_key", how="inner")
    stats["excluded/no_option"] = before - frame.height
    frame = frame.with_columns(
        _option_id=pl.col("_option_ids").list.get(
            (pl.col("_option") % pl.col("_option_ids").list.len().cast(pl.UInt64)).cast(pl.Int64)
        )
    ).drop("_option_ids")
    picked = frame.select("sample_key", pl.col("_option_id").alias("option_id")).unique()
    chosen = (
        candidates.join(picked.lazy(), on=["sample_key", "option_id"], how="semi")
        .with_columns(columns)
        .select(
            "sample_key", pl.col("option_id").alias("_option_id"), *[c.meta.output_name() for c in columns]
        )
        .collect()
    )
    frame = frame.drop(
        [c for c in chosen.columns if c in frame.columns and c not in ("sample_key", "_option_id")]
    )
    frame = frame.join(chosen, on=["sample_key", "_option_id"], how="inner")
    return frame.with_columns(source_ids=pl.col("source_ids").list.concat(pl.col("option_source_ids")))


def _render(frame: pl.DataFrame, templates: TemplateSet) -> pl.DataFrame:
    if "boxes" in templates.fields:
        frame = frame.with_columns(box_strings(frame["target_boxes"]).alias("_box_strings"))
        frame = frame.with_columns(boxes=readable_list(pl.col("_box_strings")))
    cases = list(templates.answers)
    unknown = set(frame["case"].unique().to_list()) - set(cases)
    if unknown:
        raise ValueError(f"template set {templates.name!r} has no answers for cases {sorted(unknown)}")
    flat_answers = [text for case in cases for text in templates.answers[case]]
    sizes = {case: len(templates.answers[case]) for case in cases}
    offsets = dict(zip(cases, np.cumsum([0, *sizes.values()])[:-1].tolist()))

    question_index = frame["_question"].to_numpy() % np.uint64(len(templates.questions))
    case_size = frame["case"].replace_strict(sizes, return_dtype=pl.UInt64).to_numpy()
    answer_index = frame["_answer"].to_numpy() % case_size
    answer_flat = frame["case"].replace_strict(offsets, return_dtype=pl.UInt64).to_numpy() + answer_index

    question = pl.lit(IMAGE_TOKEN) + pl.col("_q_text")
    answer = pl.col("_a_text")
    # Computed fields first, so a free-text value that happens to contain "{boxes}" is never expanded.
    for name in sorted(templates.fields, key=lambda n: n != "boxes"):
        value = pl.col(name).fill_null("")
        question = question.str.replace_all(f"{{{name}}}", value, literal=True)
        answer = answer.str.replace_all(f"{{{name}}}", value, literal=True)

    frame = frame.with_columns(
        pl.Series("_q_text", templates.questions).gather(question_index),
        pl.Series("_a_text", flat_answers).gather(answer_flat),
        pl.Series("_q_index", question_index),
        pl.Series("_a_index", answer_index),
    )
    texts = frame.select(question.alias("question"), answer.alias("answer"))
    return frame.with_columns(
        conversation=_two_turns(texts["question"], texts["answer"]),
        template_id=pl.format(
            "{}:q{}:{}:a{}",
            pl.lit(templates.name),
            pl.col("_q_index").cast(pl.String).str.zfill(2),
            pl.col("case"),
            pl.col("_a_index").cast(pl.String).str.zfill(2),
        ),
    )


def _two_turns(questions: pl.Series, answers: pl.Series) -> pl.Series:
    """Conversations of one human and one gpt turn: the 2n turns are built as one flat column and cut
    into pairs, ~20x faster than a ``concat_list`` of two structs per row."""
    n = questions.len()
    interleaved = np.column_stack([np.arange(n), np.arange(n) + n]).ravel()
    turns = pl.DataFrame(
        {
            "from": pl.Series(["human", "gpt"]).gather(np.tile([0, 1], n)),
            "value": pl.concat([questions, answers]).gather(interleaved),
        }
    )
    return turns.to_struct("turn").reshape((n, 2)).cast(pl.List(TURN)).alias("conversation")
