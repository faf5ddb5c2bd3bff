"""The one box format of the project: ``[x1, y1, x2, y2]`` normalised to [0, 1] by the original image size.

Readers convert every source convention (pixel corners, pixel x/y/w/h, already normalised) into it with
the functions here, so clipping and validation happen in one place; the corpus writes boxes as text with
``format_box`` and the evaluation reads them back with ``parse_boxes``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import polars as pl

Box = tuple[float, float, float, float]

PX = ("px_x1", "px_y1", "px_x2", "px_y2")
NORM = ("x1", "y1", "x2", "y2")


def normalise_pixel_boxes(frame: pl.DataFrame, width: str = "width", height: str = "height") -> pl.DataFrame:
    """Add ``x1..y2`` (normalised, clipped), ``clipped`` and ``invalid_reason``/``invalid_detail``.

    Expects float pixel corners in ``px_x1..px_y2`` and the original image size. A box is invalid when
    the image size is unknown (never defaulted, unlike the paper's code), a coordinate is missing, it is
    inverted or empty, or it lies wholly outside the image; a box that only overhangs is clipped.
    """
    w, h = pl.col(width).cast(pl.Float64), pl.col(height).cast(pl.Float64)
    normalised = frame.with_columns(
        (pl.col("px_x1") / w).clip(0.0, 1.0).alias("x1"),
        (pl.col("px_y1") / h).clip(0.0, 1.0).alias("y1"),
        (pl.col("px_x2") / w).clip(0.0, 1.0).alias("x2"),
        (pl.col("px_y2") / h).clip(0.0, 1.0).alias("y2"),
    )
    return _validate(
        normalised,
        size_known=(w > 0) & (h > 0) & w.is_not_null() & h.is_not_null(),
        raw=[pl.col(c) for c in PX],
        upper_x=w,
        upper_y=h,
    )


# How far past [0, 1] a coordinate of an already normalised release may lie and still be clipped: float
# rounding in the release's own normalisation, never a box drawn past the image edge.
NORMALISED_TOLERANCE = 0.01


def validate_normalised_boxes(frame: pl.DataFrame, tolerance: float = NORMALISED_TOLERANCE) -> pl.DataFrame:
    """For sources whose boxes are already in [0, 1] (PadChest-GR): clip and validate the same way.

    Expects ``x1..y2``; overwrites them clipped and adds the same columns as ``normalise_pixel_boxes``.
    A pixel box may overhang the image (drawn past its edge) and is clipped; a normalised coordinate
    more than ``tolerance`` outside [0, 1] cannot come from any drawing and is invalid
    (``coordinate_out_of_range``): clipping it would train on a box no annotator drew.
    """
    raw = frame.with_columns([pl.col(c).cast(pl.Float64).alias(f"_raw_{c}") for c in NORM])
    clipped = raw.with_columns([pl.col(f"_raw_{c}").clip(0.0, 1.0).alias(c) for c in NORM])
    raw_columns = [pl.col(f"_raw_{c}") for c in NORM]
    validated = _validate(
        clipped,
        size_known=pl.lit(True),
        raw=raw_columns,
        upper_x=pl.lit(1.0),
        upper_y=pl.lit(1.0),
        out_of_range=pl.any_horizontal([(r < -tolerance) | (r > 1.0 + tolerance) for r in raw_columns]),
        range_detail=f"has a coordinate outside [0, 1] by more than {tolerance}, in a release whose "
        "boxes are normalised",
    )
    return validated.drop([f"_raw_{c}" for c in NORM])


def _validate(
    frame: pl.DataFrame,
    size_known: pl.Expr,
    raw: list[pl.Expr],
    upper_x: pl.Expr,
    upper_y: pl.Expr,
    out_of_range: pl.Expr | None = None,  # only normalised releases have a range to leave
    range_detail: str = "",
):
    rx1, ry1, rx2, ry2 = raw
    out_of_range = pl.lit(False) if out_of_range is None else out_of_range
    any_missing = pl.any_horizontal([r.is_null() | r.is_nan() for r in raw])
    inverted = (rx2 <= rx1) | (ry2 <= ry1)
    outside = (rx1 >= upper_x) | (ry1 >= upper_y) | (rx2 <= 0) | (ry2 <= 0)
    reason = (
        pl.when(~size_known)
        .then(pl.lit("missing_image_size"))
        .when(any_missing)
        .then(pl.lit("missing_coordinate"))
        .when(inverted)
        .then(pl.lit("inverted_box"))
        .when(outside)
        .then(pl.lit("box_outside_image"))
        .when(out_of_range)
        .then(pl.lit("coordinate_out_of_range"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    coords = pl.format(
        "[{}, {}, {}, {}]", *[r.cast(pl.String).fill_null("null") for r in raw]
    )  # format() of a null is null
    detail = (
        pl.when(~size_known)
        .then(pl.lit("the image size is unknown, so the box cannot be normalised"))
        .when(any_missing)
        .then(pl.format("box {} has a missing coordinate", coords))
        .when(inverted)
        .then(pl.format("box {} has x2 <= x1 or y2 <= y1", coords))
        .when(outside)
        .then(pl.format("box {} lies wholly outside the image", coords))
        .when(out_of_range)
        .then(pl.format(f"box {{}} {range_detail}", coords))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    overhang = (rx1 < 0) | (ry1 < 0) | (rx2 > upper_x) | (ry2 > upper_y)
    return frame.with_columns(
        invalid_reason=reason, invalid_detail=detail, clipped=overhang.fill_null(False) & reason.is_null()
    )


def xywh_to_corners(frame: pl.DataFrame, x: str, y: str, w: str, h: str) -> pl.DataFrame:
    """Pixel x/y/width/height (MS-CXR) -> pixel corners ``px_x1..px_y2``."""
    fx, fy, fw, fh = (pl.col(c).cast(pl.Float64, strict=False) for c in (x, y, w, h))
    return frame.with_columns(px_x1=fx, px_y1=fy, px_x2=fx + fw, px_y2=fy + fh)


def format_box(box: Sequence[float]) -> str:
    """``[0.12, 0.34, 0.56, 0.78]``: the text form used in every instruction and answer."""
    return "[" + ", ".join(f"{float(v):.2f}" for v in box) + "]"


_BOX_PATTERN = re.compile(
    r"\[\s*(-?\d*\.?\d+)\s*,\s*(-?\d*\.?\d+)\s*,\s*(-?\d*\.?\d+)\s*,\s*(-?\d*\.?\d+)\s*\]"
)


def parse_boxes(text: str) -> list[Box]:
    """Every ``[x1, y1, x2, y2]`` in a text, in order of appearance."""
    return [tuple(float(v) for v in match.groups()) for match in _BOX_PATTERN.finditer(text)]


def pairwise_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of every box with every other box, over any leading axes: (..., P, 4) x (..., G, 4) -> (..., P, G).

    The grounding metrics score predicted against ground-truth boxes with it and the VinDr-CXR reader
    assigns radiologists to fused boxes, so both see the same overlap. An inverted box has zero area; a
    zero union gives IoU 0.
    """
    p = boxes[..., :, None, :]
    g = others[..., None, :, :]
    inter_w = np.clip(np.minimum(p[..., 2], g[..., 2]) - np.maximum(p[..., 0], g[..., 0]), 0.0, None)
    inter_h = np.clip(np.minimum(p[..., 3], g[..., 3]) - np.maximum(p[..., 1], g[..., 1]), 0.0, None)
    inter = inter_w * inter_h
    area_p = np.clip(p[..., 2] - p[..., 0], 0.0, None) * np.clip(p[..., 3] - p[..., 1], 0.0, None)
    area_g = np.clip(g[..., 2] - g[..., 0], 0.0, None) * np.clip(g[..., 3] - g[..., 1], 0.0, None)
    union = area_p + area_g - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def weighted_box_fusion(
    boxes_per_annotator: Sequence[np.ndarray],
    labels_per_annotator: Sequence[Sequence[int]],
    iou_thr: float,
    skip_box_thr: float,
    conf_type: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fuse several annotators' normalised boxes of one image with ensemble-boxes' WBF.

    Every annotator's box gets confidence 1.0 and equal weight (radiologists are peers). Returns
    (boxes, scores, labels); boxes stay in [0, 1].
    """
    from ensemble_boxes import weighted_boxes_fusion

    boxes_list = [np.asarray(b, dtype=float).reshape(-1, 4) for b in boxes_per_annotator]
    scores_list = [np.ones(len(b)) for b in boxes_list]
    labels_list = [np.asarray(lbl, dtype=int) for lbl in labels_per_annotator]
    return weighted_boxes_fusion(
        boxes_list, scores_list, labels_list, iou_thr=iou_thr, skip_box_thr=skip_box_thr, conf_type=conf_type
    )
