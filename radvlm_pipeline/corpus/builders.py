"""Per task: source tables -> samples for the template engine (``engine.Samples``).

A sample is the unit a task draws one instruction from: an image (report generation, classification,
anatomical grounding, detection, conversations), an image and one finding class (abnormality grounding)
or an image and one phrase (phrase grounding). Builders only join and group; every random-looking choice
is the engine's.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import polars as pl

from radvlm_pipeline.corpus.engine import (
    BOX_LIST,
    Samples,
    alternates_human_gpt,
    box_strings,
    display_label,
    display_labels,
    lineage,
    readable_list,
)
from radvlm_pipeline.corpus.inputs import CorpusInputs
from radvlm_pipeline.corpus.templates import CLASSIFICATION, DETECTION, GROUNDING, PHRASE, REPORT, TemplateSet
from radvlm_pipeline.schema import CHEXPERT_LABELS

NO_FINDING = "No Finding"
_FOUND = "_found"


def _image_lineage() -> pl.Expr:
    return lineage(image=pl.col("image_id"), study=pl.col("study_id"), subject=pl.col("subject_id"))


def _no_targets() -> list[pl.Expr]:
    return [
        pl.lit(None, dtype=BOX_LIST).alias("target_boxes"),
        pl.lit(None, dtype=pl.List(pl.String)).alias("target_labels"),
    ]


def _no_llm() -> pl.Expr:
    return pl.lit(None, dtype=pl.List(pl.String)).alias("llm_cache_keys")


def _skipped(frame: pl.DataFrame, reason: str = "_reason") -> dict[str, int]:
    counts = frame.filter(pl.col(reason).is_not_null()).group_by(reason).len()
    return {row[0]: row[1] for row in counts.sort(reason).iter_rows()}


def attach_to_images(images: pl.LazyFrame, table: pl.LazyFrame, columns: list[str]) -> pl.LazyFrame:
    """Join per-image rows (``image_id`` set) or per-study rows (``image_id`` null) onto each image;
    ``_found`` says whether any matched."""
    marked = table.with_columns(pl.lit(True).alias(_FOUND))
    wanted = [*columns, _FOUND]
    per_image = marked.filter(pl.col("image_id").is_not_null()).select("image_id", *wanted)
    per_study = marked.filter(pl.col("image_id").is_null()).select(
        "study_id", *[pl.col(c).alias(f"{c}__study") for c in wanted]
    )
    joined = images.join(per_image, on="image_id", how="left").join(per_study, on="study_id", how="left")
    by_image = pl.col(_FOUND).fill_null(False)
    return joined.with_columns(
        [pl.when(by_image).then(pl.col(c)).otherwise(pl.col(f"{c}__study")).alias(c) for c in wanted]
    ).drop([f"{c}__study" for c in wanted])


def report_generation(inputs: CorpusInputs, source: str, splits: tuple[str, ...]) -> Samples:
    """One sample per image with a prior-free report (the LLM stage's ``report_clean``)."""
    clean = inputs.clean_reports().filter(pl.col("source") == source)
    joined = attach_to_images(inputs.images(source, splits), clean, ["report_clean", "status", "cache_key"])
    report = pl.col("report_clean").str.strip_chars()
    frame = joined.with_columns(
        _reason=pl.when(pl.col(_FOUND).is_null())
        .then(pl.lit("no_clean_report"))
        .when(pl.col("status") != "ok")
        .then(pl.format("report_{}", pl.col("status")))
        .when(report.is_null() | (report == ""))
        .then(pl.lit("report_empty"))
    ).collect()
    samples = frame.filter(pl.col("_reason").is_null()).select(
        "split",
        "subject_id",
        "image_dataset",
        "image_path",
        *_no_targets(),
        sample_key=pl.col("image_id"),
        source_ids=_image_lineage(),
        llm_cache_keys=pl.concat_list(pl.col("cache_key")),
        case=pl.lit("report"),
        report=report,
    )
    return Samples(samples, skipped=_skipped(frame))


def classification(inputs: CorpusInputs, source: str, splits: tuple[str, ...]) -> Samples:
    """One sample per image with labels. Targets: every positive label (``No Finding`` included, as the
    evaluation scores all 14); the answer names the positive labels other than ``No Finding``."""
    labels = inputs.table(source, "labels")
    frame = (
        attach_to_images(inputs.images(source, splits), labels, list(CHEXPERT_LABELS))
        .with_columns(_reason=pl.when(pl.col(_FOUND).is_null()).then(pl.lit("no_labels")))
        .collect()
    )
    usable = frame.filter(pl.col("_reason").is_null())
    shown = {name: display_label(name) for name in CHEXPERT_LABELS if name != NO_FINDING}
    # Long form (one row per positive label, in CHEXPERT_LABELS order) is far faster than per-row list work.
    positives = (
        usable.select("image_id", *CHEXPERT_LABELS)
        .unpivot(index="image_id", on=list(CHEXPERT_LABELS), variable_name="label")
        .filter(pl.col("value"))
        .group_by("image_id", maintain_order=True)
        .agg(
            target_labels=pl.col("label"),
            _findings=pl.col("label").replace_strict(shown, default=None).drop_nulls(),
        )
    )
    no_labels = pl.lit([], dtype=pl.List(pl.String))
    samples = (
        usable.join(positives, on="image_id", how="left")
        .with_columns(pl.col("target_labels", "_findings").fill_null(no_labels))
        .select(
            "split",
            "subject_id",
            "image_dataset",
            "image_path",
            "target_labels",
            sample_key=pl.col("image_id"),
            source_ids=_image_lineage(),
            llm_cache_keys=_no_llm(),
            case=pl.when(pl.col("_findings").list.len() == 0)
            .then(pl.lit("none"))
            .otherwise(pl.lit("findings")),
            findings=readable_list(pl.col("_findings")),
            target_boxes=pl.lit(None, dtype=BOX_LIST),
        )
    )
    return Samples(samples, skipped=_skipped(frame))


def _boxes(inputs: CorpusInputs, source: str, kind: str, splits: tuple[str, ...]) -> pl.LazyFrame:
    """Boxes of one kind on the images of some splits, with the image columns, in box_id order."""
    boxes = (
        inputs.table(source, "boxes")
        .filter(pl.col("kind") == kind)
        .select("image_id", "box_id", "label", box=pl.concat_arr("x1", "y1", "x2", "y2"))
    )
    return (
        inputs.images(source, splits)
        .join(boxes, on="image_id", how="inner")
        .sort("image_id", "label", "box_id")
    )


def _grouped_boxes(inputs: CorpusInputs, source: str, kind: str, splits: tuple[str, ...]) -> pl.DataFrame:
    """One row per (image, label): its boxes and box ids, in box_id order."""
    return (
        _boxes(inputs, source, kind, splits)
        .group_by("image_id", "label", maintain_order=True)
        .agg(
            pl.col("study_id", "subject_id", "split", "image_dataset", "image_path").first(),
            target_boxes=pl.col("box"),
            box_ids=pl.col("box_id"),
        )
        .collect()
    )


def _box_lineage() -> pl.Expr:
    return _image_lineage().list.concat(pl.col("box_ids").list.eval(pl.format("box:{}", pl.element())))


def anatomical_grounding(inputs: CorpusInputs, source: str, splits: tuple[str, ...]) -> Samples:
    """One sample per image with region boxes; the engine draws one region per repetition."""
    images = inputs.images(source, splits).collect()
    regions = inputs.table(source, "boxes").filter(pl.col("kind") == "region")
    with_regions = images.join(regions.select("image_id").unique().collect(), on="image_id", how="semi")
    samples = with_regions.select(
        "split",
        "subject_id",
        "image_dataset",
        "image_path",
        sample_key=pl.col("image_id"),
        source_ids=_image_lineage(),
        llm_cache_keys=_no_llm(),
        case=pl.lit("boxes"),
    )
    options = regions.select(
        "x1", "y1", "x2", "y2", "label", "box_id", sample_key=pl.col("image_id"), option_id=pl.col("box_id")
    )
    option_columns = [
        pl.col("label").alias("target"),  # region names are lower case already ("right lung")
        pl.concat_list(pl.concat_arr("x1", "y1", "x2", "y2")).alias("target_boxes"),
        pl.concat_list(pl.col("label")).alias("target_labels"),
        pl.concat_list(pl.format("box:{}", pl.col("box_id"))).alias("option_source_ids"),
    ]
    skipped = {"no_region_boxes": images.height - with_regions.height}
    return Samples(
        samples,
        options=options,
        option_columns=option_columns,
        skipped={k: v for k, v in skipped.items() if v},
    )


def _group_samples(groups: pl.DataFrame, sample_key: pl.Expr, shown_as: str) -> Samples:
    """One sample per (image, label) group of boxes; the label fills the template field ``shown_as``."""
    return Samples(
        groups.select(
            "split",
            "subject_id",
            "image_dataset",
            "image_path",
            "target_boxes",
            sample_key=sample_key,
            source_ids=_box_lineage(),
            llm_cache_keys=_no_llm(),
            case=pl.lit("boxes"),
            target_labels=_labels_per_box(),
            **{shown_as: display_labels(groups["label"])},
        )
    )


def _labels_per_box() -> pl.Expr:
    return pl.col("label").repeat_by(pl.col("target_boxes").list.len())


def _concatenated(lists: pl.Expr) -> pl.Expr:
    """In a group_by: the group's lists as one list."""
    return lists.list.explode(keep_nulls=False, empty_as_null=False)


def abnormality_grounding(inputs: CorpusInputs, source: str, splits: tuple[str, ...]) -> Samples:
    """One sample per (image, finding class): all boxes of that class on the image."""
    groups = _grouped_boxes(inputs, source, "finding", splits)
    return _group_samples(groups, pl.format("{}|{}", pl.col("image_id"), pl.col("label")), "target")


def abnormality_detection(inputs: CorpusInputs, source: str, splits: tuple[str, ...]) -> Samples:
    """One sample per image: every finding with its boxes, or none (an image without finding boxes is a
    negative; VinDr-CXR's "No finding" rows carry no box)."""
    groups = _grouped_boxes(inputs, source, "finding", splits)
    groups = groups.with_columns(
        box_strings(groups["target_boxes"]).alias("_box_strings"),
        display_labels(groups["label"]).alias("_shown"),
    ).with_columns(_text=pl.format("{} at {}", pl.col("_shown"), readable_list(pl.col("_box_strings"))))
    per_image = groups.group_by("image_id", maintain_order=True).agg(
        _texts=pl.col("_text"),
        target_boxes=_concatenated(pl.col("target_boxes")),
        target_labels=_concatenated(_labels_per_box()),
        box_ids=_concatenated(pl.col("box_ids")),
    )
    images = inputs.images(source, splits).collect().join(per_image, on="image_id", how="left")
    found = pl.col("_texts").is_not_null()
    samples = images.select(
        "split",
        "subject_id",
        "image_dataset",
        "image_path",
        sample_key=pl.col("image_id"),
        source_ids=_image_lineage().list.concat(
            pl.col("box_ids")
            .fill_null(pl.lit([], dtype=pl.List(pl.String)))
            .list.eval(pl.format("box:{}", pl.element()))
        ),
        llm_cache_keys=_no_llm(),
        case=pl.when(found).then(pl.lit("findings")).otherwise(pl.lit("none")),
        findings=readable_list(pl.col("_texts"), separator="; ", last="; and "),
        target_boxes=pl.col("target_boxes").fill_null(pl.lit([], dtype=BOX_LIST)),
        target_labels=pl.col("target_labels").fill_null(pl.lit([], dtype=pl.List(pl.String))),
    )
    return Samples(samples)


def phrase_grounding(inputs: CorpusInputs, source: str, splits: tuple[str, ...]) -> Samples:
    """One sample per (image, phrase): the phrase's boxes. Keyed by its first box id (phrases are long)."""
    groups = _grouped_boxes(inputs, source, "phrase", splits)
    return _group_samples(groups, pl.col("box_ids").list.first(), "phrase")


def llm_conversations(inputs: CorpusInputs, source: str, splits: tuple[str, ...], kind: str) -> Samples:
    """One sample per image with a synthesized conversation of this kind (``standard`` or ``grounded``)."""
    conversations = (
        inputs.conversations()
        .filter((pl.col("source") == source) & (pl.col("kind") == kind) & pl.col("split").is_in(list(splits)))
        .select("image_id", "split", "conversation", "facts", "cache_key")
        .sort("image_id", "cache_key")
    )
    images = inputs.table(source, "images").select(
        "image_id", "study_id", "subject_id", image_dataset=pl.col("dataset"), image_path=pl.col("path")
    )
    frame = (
        conversations.join(images, on="image_id", how="left")
        .with_columns(_duplicate=pl.col("image_id").is_first_distinct().not_())
        .with_columns(
            _reason=pl.when(pl.col("_duplicate"))
            .then(pl.lit("duplicate_conversation"))
            .when(pl.col("image_path").is_null())
            .then(pl.lit("image_not_in_source"))
            .when(~alternates_human_gpt(pl.col("conversation")))
            .then(pl.lit("malformed_conversation"))
        )
        .collect()
    )
    samples = frame.filter(pl.col("_reason").is_null()).select(
        "split",
        "subject_id",
        "image_dataset",
        "image_path",
        "conversation",
        *_no_targets(),
        reference=pl.col("facts"),
        sample_key=pl.col("image_id"),
        source_ids=_image_lineage(),
        llm_cache_keys=pl.concat_list(pl.col("cache_key")),
        case=pl.lit(None, dtype=pl.String),
    )
    return Samples(samples, skipped=_skipped(frame))


Builder = Callable[[CorpusInputs, str, tuple[str, ...]], Samples]

BUILDERS: dict[str, Builder] = {
    "report_generation": report_generation,
    "classification": classification,
    "anatomical_grounding": anatomical_grounding,
    "abnormality_grounding": abnormality_grounding,
    "abnormality_detection": abnormality_detection,
    "phrase_grounding": phrase_grounding,
    "conversation": partial(llm_conversations, kind="standard"),
    "grounded_conversation": partial(llm_conversations, kind="grounded"),
}

TASK_TEMPLATES: dict[str, TemplateSet | None] = {
    "report_generation": REPORT,
    "classification": CLASSIFICATION,
    "anatomical_grounding": GROUNDING,
    "abnormality_grounding": GROUNDING,
    "abnormality_detection": DETECTION,
    "phrase_grounding": PHRASE,
    "conversation": None,
    "grounded_conversation": None,
}
