"""VinDr-CXR 1.0.0 (PhysioNet release) -> canonical images and boxes.

Input rows are the annotation CSVs' rows: ``annotations/annotations_train.csv`` (three radiologists per
image, column ``rad_id``) and ``annotations/annotations_test.csv`` (the five-radiologist consensus,
column spelled ``rad_ID``). A "No finding" row has no box; an image whose kept rows are all "No finding"
stays in the images table with no boxes, a negative for abnormality detection. The image-level label
files (``image_labels_*.csv``) are not read: the paper uses VinDr-CXR for grounding and detection only.

Every DICOM (``{split}/{image_id}.dicom``) is converted once to an 8-bit PNG under the storage root
(``radvlm_pipeline.dicom``); that conversion is also the image check, whatever ``options.image_check``
says, because downstream stages need the PNG. Boxes are normalised by the DICOM's own Columns/Rows.
The train radiologists' boxes are fused per image and class with weighted box fusion (the paper, after
Müller et al. 2024), at the IoU threshold of the paper's code (0.1, ``ReaderOptions.wbf_iou_thr``); the
test boxes are already a consensus and are kept as released.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from radvlm_pipeline.boxes import NORM, PX, normalise_pixel_boxes, pairwise_iou, weighted_box_fusion
from radvlm_pipeline.datasets import VINDR_CXR
from radvlm_pipeline.dicom import dicom_to_png
from radvlm_pipeline.images import ImageProblem
from radvlm_pipeline.layout import StorageLayout
from radvlm_pipeline.ledger import INVALID, ROW, Ledger
from radvlm_pipeline.schema import BOXES_SCHEMA, IMAGES_SCHEMA, conform
from radvlm_pipeline.sources.base import (
    NO_UPSTREAM,
    ReaderOptions,
    SourceTables,
    Upstream,
    read_csv_records,
    require_columns,
    require_file,
    require_folder,
)

TRAIN_CSV = "annotations/annotations_train.csv"
TEST_CSV = "annotations/annotations_test.csv"
PNG_ROOT = "vindr_cxr_png"  # key of DERIVED_IMAGE_ROOTS the images table's paths are relative to
NO_FINDING = "No finding"
# The 22 local (boxed) classes of the release.
LOCAL_CLASSES = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Clavicle fracture",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Enlarged PA",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Lung cavity",
    "Lung cyst",
    "Mediastinal shift",
    "Nodule/Mass",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "Rib fracture",
    "Other lesion",
)
COORDINATES = ("x_min", "y_min", "x_max", "y_max")
# Boxes after fusion (train) or as released (test): normalised corners beside DICOM pixel corners.
FUSED_SCHEMA = pl.Schema(
    {
        "image_id": pl.String,
        "class_name": pl.String,
        **{c: pl.Float64 for c in (*NORM, *PX)},
        "annotators": pl.Int32,
        "score": pl.Float64,
    }
)
# (file, split, the column naming the radiologist in that file)
ANNOTATION_FILES = ((TRAIN_CSV, "train", "rad_id"), (TEST_CSV, "test", "rad_ID"))


DATASET = VINDR_CXR
UPSTREAM: tuple[str, ...] = ()


def read(data_root: Path, options: ReaderOptions, upstream: Upstream = NO_UPSTREAM) -> SourceTables:
    root = require_folder(VINDR_CXR, data_root)
    if options.storage_root is None:
        raise ValueError(
            "the VinDr-CXR reader needs options.storage_root: the converted PNGs are written under it"
        )
    ledger = Ledger(VINDR_CXR.key)
    rows = _load_annotations(root, ledger)
    rows = _quarantine(rows, _row_problems(rows), ledger)

    images = _convert_images(
        root,
        StorageLayout(options.storage_root).derived_images(PNG_ROOT),
        rows.select("split", "image_id").unique(maintain_order=True),
        options.dicom_max_side,
    )
    rows = rows.join(images, on=["split", "image_id"], how="left")
    rows = _quarantine(rows, rows.select("file", ROW, "reason", "detail"), ledger)

    boxed = normalise_pixel_boxes(
        rows.filter(pl.col("class_name") != NO_FINDING).with_columns(
            [pl.col(c).cast(pl.Float64, strict=False).alias(p) for c, p in zip(COORDINATES, PX)]
        )
    )
    boxed = _quarantine(
        boxed, boxed.select("file", ROW, reason="invalid_reason", detail="invalid_detail"), ledger
    )
    kept = pl.concat(
        [
            rows.filter(pl.col("class_name") == NO_FINDING).select("file", ROW, "split", "image_id"),
            boxed.select("file", ROW, "split", "image_id"),
        ]
    )
    for (file,), part in kept.partition_by("file", as_dict=True).items():
        ledger.keep(file, part[ROW])

    fused = fuse_radiologists(
        boxed.filter(pl.col("split") == "train"),
        options.wbf_iou_thr,
        options.wbf_skip_box_thr,
        options.wbf_conf_type,
    )
    consensus = (
        boxed.filter(pl.col("split") == "test")
        .select(*FUSED_SCHEMA.names()[:-2], annotators=pl.lit(1), score=pl.lit(1.0))
        .cast(FUSED_SCHEMA)
    )
    boxes = _box_table(pl.concat([fused, consensus]))
    images_table = _images_table(
        images.join(kept.select("split", "image_id").unique(), on=["split", "image_id"])
    )
    quarantine, accounting = ledger.finish()
    return SourceTables(
        images=images_table,
        boxes=boxes,
        quarantine=quarantine,
        accounting=accounting,
        facts={
            "release": VINDR_CXR.release,
            "wbf_iou_thr": options.wbf_iou_thr,
            "wbf_skip_box_thr": options.wbf_skip_box_thr,
            "wbf_conf_type": options.wbf_conf_type,
            "wbf_applied_to": "train (three radiologists per image); test boxes are the released consensus",
            "radiologist_boxes_fused": boxed.filter(pl.col("split") == "train").height,
            "fused_boxes": fused.height,
            # Each fused box stands for a cluster of radiologist boxes: the difference is how many boxes
            # fusion folded into another, the quantity the IoU threshold moves.
            "boxes_merged_by_fusion": boxed.filter(pl.col("split") == "train").height - fused.height,
            "fused_boxes_from_several_radiologists": fused.filter(pl.col("annotators") > 1).height,
            "test_consensus_boxes": consensus.height,
            "clipped_boxes": int(boxed["clipped"].sum()),
            "negative_images": images_table.height - boxes["image_id"].n_unique(),
            "dicom_max_side": options.dicom_max_side or "original size",
            "dicoms_converted": int(images["converted"].sum()),
            "pngs_reused": int((~images["converted"]).sum()),  # null (not converted at all) counts as neither
            "photometric_interpretations": dict(sorted(Counter(images["photometric"].drop_nulls()).items())),
        },
    )


def _load_annotations(root: Path, ledger: Ledger) -> pl.DataFrame:
    frames = []
    for file, split, rad_column in ANNOTATION_FILES:
        raw = read_csv_records(require_file(VINDR_CXR, root, file), VINDR_CXR)
        require_columns(raw, ("image_id", rad_column, "class_name", *COORDINATES), VINDR_CXR, file)
        ledger.expect(file, raw[ROW])
        frames.append(
            raw.select(
                pl.lit(file).alias("file"),
                ROW,
                pl.lit(split).alias("split"),
                pl.col("image_id").str.strip_chars(),
                pl.col(rad_column).str.strip_chars().alias("rad_id"),
                pl.col("class_name").str.strip_chars(),
                *COORDINATES,
            )
        )
    return pl.concat(frames)


def _row_problems(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows that cannot be used whatever their image: a missing key, a repeat, an unknown class."""
    content = ["image_id", "rad_id", "class_name", *COORDINATES]
    first_row = pl.col(ROW).min().over(["file", *content])
    missing = [
        pl.when(pl.col(c).is_null() | (pl.col(c) == "")).then(pl.lit(c)) for c in ("image_id", "class_name")
    ]
    missing.append(pl.when((pl.col("split") == "train") & pl.col("rad_id").is_null()).then(pl.lit("rad_id")))
    missing_columns = pl.concat_str(missing, separator=", ", ignore_nulls=True)
    problems = rows.with_columns(missing=missing_columns).with_columns(
        reason=pl.when(pl.col("missing") != "")
        .then(pl.lit("missing_value"))
        .when(pl.col(ROW) != first_row)
        .then(pl.lit("duplicate_row"))
        .when(~pl.col("class_name").is_in([*LOCAL_CLASSES, NO_FINDING]))
        .then(pl.lit("unknown_class")),
        detail=pl.when(pl.col("missing") != "")
        .then(pl.format("no value for {}", pl.col("missing")))
        .when(pl.col(ROW) != first_row)
        .then(pl.format("the same annotation as row {}", first_row))
        .otherwise(
            pl.format("class_name '{}' is not a {} class", pl.col("class_name"), pl.lit(VINDR_CXR.release))
        ),
    )
    return problems.select("file", ROW, "reason", "detail")


def _quarantine(rows: pl.DataFrame, problems: pl.DataFrame, ledger: Ledger) -> pl.DataFrame:
    """Record the rows with a reason as invalid and return the others."""
    rejected = problems.filter(pl.col("reason").is_not_null())
    for (file,), part in rejected.partition_by("file", as_dict=True).items():
        ledger.reject_many(file, part, INVALID)
    return rows.join(rejected.select("file", ROW), on=["file", ROW], how="anti", maintain_order="left")


def _convert_images(root: Path, png_root: Path, wanted: pl.DataFrame, max_side: int | None) -> pl.DataFrame:
    """One row per (split, image_id): the DICOM's size, sex and view, or why it cannot be used."""

    def convert(split: str, image_id: str) -> dict:
        try:
            image = dicom_to_png(
                root / split / f"{image_id}.dicom", png_root / split / f"{image_id}.png", max_side
            )
        except ImageProblem as problem:
            return {"reason": problem.reason, "detail": problem.detail}
        return {
            "width": image.width,
            "height": image.height,
            "sex": image.sex,
            "view": image.view,
            "photometric": image.photometric,
            "converted": image.converted,
        }

    pairs = list(wanted.iter_rows())
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda pair: convert(*pair), pairs))
    schema = {
        "width": pl.Int32,
        "height": pl.Int32,
        "sex": pl.String,
        "view": pl.String,
        "photometric": pl.String,
        "converted": pl.Boolean,
        "reason": pl.String,
        "detail": pl.String,
    }
    return wanted.hstack(pl.DataFrame(results, schema=schema))


def fuse_radiologists(
    boxes: pl.DataFrame, iou_thr: float, skip_box_thr: float, conf_type: str
) -> pl.DataFrame:
    """Weighted box fusion per image over its radiologists, class by class (ensemble-boxes).

    ``annotators`` counts the radiologists whose boxes went into a fused box: each radiologist box is
    assigned to the fused box of its class it overlaps most.
    """
    fused_rows = []
    for (image_id,), group in boxes.sort("image_id", "rad_id", ROW).group_by("image_id", maintain_order=True):
        classes = sorted(group["class_name"].unique())
        rads = sorted(group["rad_id"].unique())
        per_rad = [group.filter(pl.col("rad_id") == rad) for rad in rads]
        fused, scores, labels = weighted_box_fusion(
            [part.select(NORM).to_numpy() for part in per_rad],
            [[classes.index(c) for c in part["class_name"]] for part in per_rad],
            iou_thr=iou_thr,
            skip_box_thr=skip_box_thr,
            conf_type=conf_type,
        )
        labels = labels.astype(int)
        members: list[set[str]] = [set() for _ in labels]
        for rad, class_name, *box in group.select("rad_id", "class_name", *NORM).iter_rows():
            same_class = np.flatnonzero(labels == classes.index(class_name))
            if same_class.size:
                members[same_class[np.argmax(pairwise_iou(np.array([box]), fused[same_class])[0])]].add(rad)
        size = np.array([group["width"][0], group["height"][0]] * 2, dtype=float)
        for box, score, label, rads_in_box in zip(fused, scores, labels, members):
            fused_rows.append(
                (
                    image_id,
                    classes[label],
                    *box.tolist(),
                    *(box * size).tolist(),
                    max(1, len(rads_in_box)),
                    float(score),
                )
            )
    return pl.DataFrame(fused_rows, schema=FUSED_SCHEMA, orient="row")


def _box_table(boxes: pl.DataFrame) -> pl.DataFrame:
    ordered = boxes.sort("image_id", "class_name", *NORM).with_columns(
        box_id=pl.format("{}:{}", pl.col("image_id"), pl.int_range(pl.len()).over("image_id"))
    )
    return conform(
        ordered.with_columns(
            source=pl.lit(VINDR_CXR.key),
            kind=pl.lit("finding"),
            label=pl.col("class_name"),
            category=pl.lit(None, dtype=pl.String),
        ),
        BOXES_SCHEMA,
    )


def _images_table(images: pl.DataFrame) -> pl.DataFrame:
    return conform(
        images.sort("split", "image_id").with_columns(
            source=pl.lit(VINDR_CXR.key),
            dataset=pl.lit(PNG_ROOT),
            subject_id=pl.lit(None, dtype=pl.String),  # the release has no patient ids
            study_id=pl.col("image_id"),  # one image per study
            path=pl.format("{}/{}.png", pl.col("split"), pl.col("image_id")),
            original_path=pl.format("{}/{}.dicom", pl.col("split"), pl.col("image_id")),
        ),
        IMAGES_SCHEMA,
    )
