"""Synthetic MS-CXR 1.0.0, as released, on the MIMIC-CXR sample's frontal images.

Written under ``ms-cxr/``::

    MS_CXR_Local_Alignment_v1.0.0.csv   dicom_id,category_name,label_text,path,x,y,w,h,image_width,image_height

Phrases and boxes come from the same case as the image's pixels, report and labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from radvlm_pipeline.sample_data.common import Fault, rng_for
from radvlm_pipeline.sample_data.files import csv_bytes, write_file, write_table
from radvlm_pipeline.sample_data.mimic_cxr import MimicStudy, dirt_host, unreadable_image
from radvlm_pipeline.sources.ms_cxr import ANNOTATIONS, COLUMNS

IMAGES_PER_SPLIT = {"train": 24, "validate": 8, "test": 10}

# MS-CXR's eight categories cover these findings; label_text is the phrase a radiologist boxed.
PHRASES = {
    "cardiomegaly": ("Cardiomegaly", ("moderately enlarged heart", "cardiomegaly")),
    "effusion": (
        "Pleural Effusion",
        ("small {side} pleural effusion", "blunting of the {side} costophrenic angle"),
    ),
    "pneumothorax": ("Pneumothorax", ("small {side} apical pneumothorax",)),
    "consolidation": ("Consolidation", ("focal consolidation in the {side} lower lobe",)),
    "atelectasis": ("Atelectasis", ("{side} basilar atelectasis",)),
    "edema": ("Edema", ("interstitial edema",)),
    "pneumonia": ("Pneumonia", ("patchy {side} opacity concerning for pneumonia",)),
}

# The faults Variant.DIRTY injects. Rows appended to a file keep every clean row where it was, so the
# dirty sample is the clean one plus these; ``faults`` names the exact file and row of each.
DIRT = {
    "box_outside_image": "a box right of its image (appended)",
    "inverted_box": "a box with negative width (appended)",
    "missing_image_width": "a valid box with image_width blank: the reader takes MIMIC-CXR's (appended)",
    "duplicate_row": "row repeating the first one (appended)",
    "not_in_mimic_images": "a box on MIMIC-CXR's unreadable image (appended)",
}


def _box_rows(studies: list[MimicStudy], seed: int) -> list[list[object]]:
    """Boxes of phrases on frontal images of every MIMIC-CXR split; some phrases carry two boxes."""
    rows = []
    for split, wanted in IMAGES_PER_SPLIT.items():
        eligible = [
            (study, image)
            for study in studies
            if study.split == split
            for image in study.frontal_images()[:1]
            if any(p.finding.key in PHRASES and not p.uncertain for p in study.case.findings)
        ]
        rng = rng_for(seed, "ms-cxr", split)
        picks = sorted(rng.choice(len(eligible), size=min(wanted, len(eligible)), replace=False))
        for index in picks:
            study, image = eligible[int(index)]
            phrase_rng = rng_for(seed, "ms-cxr", "phrases", image.dicom_id)
            for placed in [p for p in study.case.findings if p.finding.key in PHRASES and not p.uncertain][
                :2
            ]:
                category, phrases = PHRASES[placed.finding.key]
                text = phrases[int(phrase_rng.integers(len(phrases)))].format(side=placed.side)
                x1, y1, x2, y2 = placed.box
                x, y = round(x1 * image.width), round(y1 * image.height)
                w, h = round((x2 - x1) * image.width), round((y2 - y1) * image.height)
                parts = [(x, y, w, h)]
                if phrase_rng.random() < 0.25:  # one opacity boxed as two overlapping parts
                    upper = round(h * 0.55)
                    parts = [(x, y, w, upper), (x, y + h - upper, w, upper)]
                for px, py, pw, ph in parts:
                    rows.append(
                        [
                            image.dicom_id,
                            category,
                            text,
                            study.image_path(image),
                            px,
                            py,
                            pw,
                            ph,
                            image.width,
                            image.height,
                        ]
                    )
    return rows


def write(root: Path, studies: list[MimicStudy], seed: int, dirty: bool) -> dict[str, int]:
    rows = _box_rows(studies, seed)
    if dirty:
        base = rows[0]
        width = base[8]
        rows.append([*base[:4], width + 5, base[5], 20, 20, *base[8:]])  # box_outside_image
        rows.append([*base[:4], base[4] + 20, base[5], -20, base[7], *base[8:]])  # inverted_box
        rows.append(
            [*base[:4], base[4] + 2, base[5] + 2, base[6], base[7], "", base[9]]
        )  # missing_image_width
        rows.append(list(base))  # duplicate_row
        host, image = dirt_host(studies, "train"), unreadable_image(studies, seed)
        rows.append(
            [
                image.dicom_id,
                "Pleural Effusion",
                "small right pleural effusion",
                host.image_path(image),
                10,
                60,
                20,
                20,
                image.width,
                image.height,
            ]
        )  # not_in_mimic_images
    write_file(root / ANNOTATIONS, csv_bytes(COLUMNS, rows))
    return {
        "rows": len(rows),
        "images": len({r[0] for r in rows}),
        "phrases": len({(r[0], r[2]) for r in rows}),
    }


def faults(studies: list[MimicStudy], seed: int) -> dict[str, Fault]:
    """Where each fault of ``DIRT`` lies in the dirty sample: fault -> Fault."""
    rows = len(_box_rows(studies, seed))
    return {
        "box_outside_image": Fault(ANNOTATIONS, rows + 1, "box_outside_image"),
        "inverted_box": Fault(ANNOTATIONS, rows + 2, "inverted_box"),
        "missing_image_width": Fault(ANNOTATIONS, rows + 3, None),
        "duplicate_row": Fault(ANNOTATIONS, rows + 4, "duplicate_row"),
        "not_in_mimic_images": Fault(ANNOTATIONS, rows + 5, "not_in_mimic_images"),
    }


# Real proportion: 1,162 MS-CXR boxes for MIMIC-CXR-JPG 2.0.0's 227,835 studies.
SCALE_BOXES_PER_STUDY = 1_162 / 227_835


def write_scale(root: Path, frontal: pl.DataFrame, rng: np.random.Generator, studies: int) -> dict[str, int]:
    """One box per sampled frontal image of ``mimic_cxr.write_scale``, at MS-CXR's real density."""
    boxes = frontal.sample(
        n=min(frontal.height, max(1, round(studies * SCALE_BOXES_PER_STUDY))),
        seed=int(rng.integers(2**31)),
    )
    rows = boxes.select(
        "dicom_id",
        pl.lit("Pleural Effusion").alias("category_name"),
        pl.lit("small right pleural effusion").alias("label_text"),
        pl.col("path") + ".jpg",
        (pl.col("Columns") * 0.1).round().cast(pl.Int64).alias("x"),
        (pl.col("Rows") * 0.5).round().cast(pl.Int64).alias("y"),
        (pl.col("Columns") * 0.3).round().cast(pl.Int64).alias("w"),
        (pl.col("Rows") * 0.3).round().cast(pl.Int64).alias("h"),
        pl.col("Columns").alias("image_width"),
        pl.col("Rows").alias("image_height"),
    )
    write_table(root / ANNOTATIONS, rows.write_csv())
    return {"rows": rows.height, "images": rows["dicom_id"].n_unique(), "phrases": rows.height}
