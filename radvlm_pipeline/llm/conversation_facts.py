"""The facts each conversation is written from, joined out of the canonical source tables.

Every input (a MIMIC-CXR report, an image with phrase boxes) becomes one ``ImageFacts`` or one
quarantine row saying why it cannot be used, so nothing drops out silently.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from radvlm_pipeline.boxes import Box
from radvlm_pipeline.llm.conversation_vocabulary import GROUNDED, STANDARD, STANDARD_SOURCE, ImageFacts
from radvlm_pipeline.llm.outputs import quarantine_row
from radvlm_pipeline.llm.prior_removal import STATUS_FAILED, STATUS_OK
from radvlm_pipeline.schema import CHEXPERT_LABELS, VIEWS_FRONTAL


def _abnormalities(label_row: Mapping | None) -> tuple[str, ...] | None:
    if label_row is None:
        return None
    return tuple(name for name in CHEXPERT_LABELS if name != "No Finding" and label_row.get(name) is True)


def _index(frame: pl.DataFrame | None, column: str) -> dict[str, dict]:
    """First row per non-null value of ``column``."""
    if frame is None or frame.is_empty():
        return {}
    rows: dict[str, dict] = {}
    for row in frame.filter(pl.col(column).is_not_null()).iter_rows(named=True):
        rows.setdefault(row[column], row)
    return rows


def _pick_frontal_per_study(images: pl.DataFrame) -> dict[str, dict]:
    """One image per study: PA before AP, then the smallest image id (stable across runs)."""
    frontal = images.filter(pl.col("view").is_in(list(VIEWS_FRONTAL)))
    ordered = frontal.sort([pl.col("view") != "PA", "image_id"])
    return _index(ordered, "study_id")


def standard_facts(
    clean_reports: pl.DataFrame, images: pl.DataFrame, labels: pl.DataFrame, backend: str
) -> tuple[list[ImageFacts], list[dict]]:
    """One ImageFacts per MIMIC-CXR report with current findings; the other reports as quarantine rows."""
    image_of_study = _pick_frontal_per_study(images)
    labels_of_study = _index(labels, "study_id")
    facts, quarantine = [], []
    for row in clean_reports.filter(pl.col("source") == STANDARD_SOURCE).iter_rows(named=True):
        if row["status"] != STATUS_OK:
            if row["status"] == STATUS_FAILED:
                reason, detail = "report_cleaning_failed", "prior-study removal failed (see its quarantine)"
            else:
                reason, detail = (
                    "no_current_findings",
                    "after prior-study removal nothing about the image is left",
                )
            quarantine.append(quarantine_row(row, reason, None, backend, detail))
            continue
        image = image_of_study.get(row["study_id"])
        if image is None:
            quarantine.append(
                quarantine_row(
                    row,
                    "no_frontal_image",
                    None,
                    backend,
                    f"study {row['study_id']} has no PA/AP image in the images table",
                )
            )
            continue
        facts.append(
            ImageFacts(
                source=STANDARD_SOURCE,
                image_id=image["image_id"],
                study_id=row["study_id"],
                split=image["split"],
                kind=STANDARD,
                report=row["report_clean"],
                abnormalities=_abnormalities(labels_of_study.get(row["study_id"])),
                view=image["view"],
                sex=image["sex"],
            )
        )
    return facts, quarantine


def grounded_facts(
    source: str,
    tables: Mapping[str, pl.DataFrame],
    fallback_reports: pl.DataFrame | None,
    fallback_labels: pl.DataFrame | None,
    backend: str,
) -> tuple[list[ImageFacts], list[dict]]:
    """One ImageFacts per image of ``source`` with phrase boxes; boxes of unknown images are quarantined.

    The report is the source's own (per image, else per study), else the cleaned report of the study the
    image shares with MIMIC-CXR, else the phrases themselves; labels likewise, else the boxes' categories.
    """
    images = _index(tables["images"], "image_id")
    own_reports = (_index(tables["reports"], "image_id"), _index(tables["reports"], "study_id"))
    own_labels = (_index(tables["labels"], "image_id"), _index(tables["labels"], "study_id"))
    shared_reports = (
        _index(fallback_reports.filter(pl.col("status") == STATUS_OK), "study_id")
        if fallback_reports is not None
        else {}
    )
    shared_labels = _index(fallback_labels, "study_id")
    phrases = tables["boxes"].filter(pl.col("kind") == "phrase").sort("box_id")
    facts, quarantine = [], []
    for (image_id,), boxes in phrases.group_by("image_id", maintain_order=True):
        image = images.get(image_id)
        if image is None:
            quarantine.append(
                quarantine_row(
                    {"source": source, "image_id": image_id},
                    "image_not_found",
                    None,
                    backend,
                    f"phrase boxes refer to image {image_id}, which is not in the images table",
                )
            )
            continue
        observations: dict[str, list[Box]] = {}
        for row in boxes.iter_rows(named=True):
            observations.setdefault(row["label"], []).append((row["x1"], row["y1"], row["x2"], row["y2"]))
        study = image["study_id"]
        report_row = own_reports[0].get(image_id) or own_reports[1].get(study)
        label_row = own_labels[0].get(image_id) or own_labels[1].get(study) or shared_labels.get(study)
        if report_row and report_row["report"]:
            report = report_row["report"]
        elif study in shared_reports:
            report = shared_reports[study]["report_clean"]
        else:
            report = " ".join(phrase.rstrip(".") + "." for phrase in observations)
        categories = tuple(sorted({c for c in boxes["category"].to_list() if c}))
        facts.append(
            ImageFacts(
                source=source,
                image_id=image_id,
                study_id=study,
                split=image["split"],
                kind=GROUNDED,
                report=report,
                abnormalities=_abnormalities(label_row) if label_row else (categories or None),
                view=image["view"],
                sex=image["sex"],
                observations=tuple((phrase, tuple(bs)) for phrase, bs in observations.items()),
            )
        )
    return facts, quarantine
