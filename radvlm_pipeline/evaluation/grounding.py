"""Grounding metrics over boxes parsed from answers: the paper's mAP, COCO AP50, Acc@0.5 and mean IoU.

Every answer is parsed once into a padded array (samples x boxes x 4) and all four metrics are computed
with array operations across samples; only the loop over box ranks (a handful) is in Python, so a few
thousand answers score in milliseconds.

Two mAP definitions are reported because they disagree on purpose:

- ``paper_map``: the RadVLM code's metric. Each sample gets its own average precision, with the order of
  the boxes in the answer as confidence; a predicted box is a true positive when its best-overlapping
  ground-truth box reaches the IoU threshold and was not already taken (a box whose best match is taken
  counts as a false positive even if another ground-truth box would fit). A sample with no predicted or
  no ground-truth box scores 0. The mean over samples is the number in the paper's Table 4.
- ``coco_ap50``: the usual detection AP at IoU 0.5 (pycocotools' rules: one class, all detections of
  all samples ranked together, greedy matching to the best still-unmatched box, 101-point interpolation),
  with answer order as confidence. ``pycocotools_ap50`` computes it with pycocotools itself; the tests
  check both agree, inverted answer boxes included: a box inverted on one axis has negative area, outside
  pycocotools' area range, so pycocotools ignores it (neither a hit nor a false positive, though it still
  takes one of the 100 detection slots); one inverted on both axes has positive area, overlaps nothing
  and is a false positive. ``paper_map`` follows the paper's code instead: every parsed box is a
  prediction, so an inverted one is a false positive there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from radvlm_pipeline.boxes import pairwise_iou, parse_boxes

IOU_THRESHOLD = 0.5
# Boxes written with two decimals often overlap at exactly 0.5, which floating point lands on either side
# of depending on the order of operations; an IoU this close to the threshold counts as reaching it.
IOU_TOLERANCE = 1e-9
COCO_MAX_DETECTIONS = 100  # pycocotools' largest maxDets, the one AP50 is reported at
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class PaddedBoxes:
    """Boxes of many samples in one array; ``valid`` marks the real ones (the rest is padding)."""

    boxes: np.ndarray  # (samples, max boxes, 4) float64
    valid: np.ndarray  # (samples, max boxes) bool

    @property
    def counts(self) -> np.ndarray:
        return self.valid.sum(axis=1)


def pad_boxes(per_sample: Sequence[Sequence[Sequence[float]]], max_boxes: int | None = None) -> PaddedBoxes:
    """Stack variable-length box lists; ``max_boxes`` keeps only the first boxes of each sample."""
    counts = [len(boxes) for boxes in per_sample]
    width = max(counts, default=0)
    if max_boxes is not None:
        width = min(width, max_boxes)
    array = np.zeros((len(per_sample), max(width, 1), 4), dtype=np.float64)
    valid = np.zeros((len(per_sample), max(width, 1)), dtype=bool)
    for index, boxes in enumerate(per_sample):
        kept = list(boxes)[:width]
        if kept:
            array[index, : len(kept)] = np.asarray(kept, dtype=np.float64).reshape(-1, 4)
            valid[index, : len(kept)] = True
    return PaddedBoxes(array, valid)


def parse_answer_boxes(answers: Sequence[str | None]) -> list[list[tuple[float, float, float, float]]]:
    return [parse_boxes(answer or "") for answer in answers]


def _masked_iou(predicted: PaddedBoxes, truth: PaddedBoxes) -> np.ndarray:
    """Pairwise IoU with -1 wherever either side is padding, so padding never matches."""
    ious = pairwise_iou(predicted.boxes, truth.boxes)
    return np.where(predicted.valid[:, :, None] & truth.valid[:, None, :], ious, -1.0)


def paper_average_precision(
    predicted: PaddedBoxes, truth: PaddedBoxes, threshold: float = IOU_THRESHOLD
) -> np.ndarray:
    """Per-sample AP as the RadVLM evaluation code computes it (see the module docstring)."""
    ious = _masked_iou(predicted, truth)
    best_gt = ious.argmax(axis=2)  # (N, P): first maximum, like np.argmax in the reference
    best_iou = np.take_along_axis(ious, best_gt[:, :, None], axis=2)[:, :, 0]
    hit = predicted.valid & (best_iou >= threshold - IOU_TOLERANCE)
    # A hit is a true positive unless an earlier hit of the same sample already took that box: the first
    # hit on a box always matches it, later ones find it taken.
    ranks = np.arange(best_gt.shape[1])
    earlier_same_box = (best_gt[:, :, None] == best_gt[:, None, :]) & (
        ranks[None, :, None] > ranks[None, None, :]
    )
    taken = (earlier_same_box & hit[:, None, :]).any(axis=2)
    true_positive = hit & ~taken

    n_gt = truth.counts.astype(np.float64)
    tp_cum = np.cumsum(true_positive, axis=1)
    seen = np.cumsum(predicted.valid, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(n_gt[:, None] > 0, tp_cum / n_gt[:, None], 0.0)
        precision = np.where(predicted.valid, tp_cum / np.maximum(seen, 1), 0.0)
    # Padding keeps the last real recall and precision 0: it adds no recall step and never raises the
    # precision envelope of a real rank, so padded samples score exactly as unpadded ones.
    last_recall = np.maximum.accumulate(np.where(predicted.valid, recall, 0.0), axis=1)
    recall = np.where(predicted.valid, recall, last_recall)
    n = len(recall)
    recall = np.concatenate([np.zeros((n, 1)), recall, np.ones((n, 1))], axis=1)
    precision = np.concatenate([np.zeros((n, 1)), precision, np.zeros((n, 1))], axis=1)
    envelope = np.flip(np.maximum.accumulate(np.flip(precision, axis=1), axis=1), axis=1)
    ap = ((recall[:, 1:] - recall[:, :-1]) * envelope[:, 1:]).sum(axis=1)
    empty = (predicted.counts == 0) | (truth.counts == 0)
    return np.where(empty, 0.0, ap)


def coco_ap50(predicted: PaddedBoxes, truth: PaddedBoxes, threshold: float = IOU_THRESHOLD) -> float | None:
    """Dataset-level AP at one IoU threshold with pycocotools' matching and interpolation.

    Confidence is the box's rank in its answer (first = most confident); ties across samples are broken
    by sample order, as pycocotools' stable sort does with image ids in sample order. None when there is
    no ground-truth box at all (pycocotools reports -1 then).
    """
    predicted = PaddedBoxes(
        predicted.boxes[:, :COCO_MAX_DETECTIONS], predicted.valid[:, :COCO_MAX_DETECTIONS]
    )
    n_truth = int(truth.counts.sum())
    if n_truth == 0:
        return None
    width = predicted.boxes[..., 2] - predicted.boxes[..., 0]
    height = predicted.boxes[..., 3] - predicted.boxes[..., 1]
    ranked = predicted.valid & (width * height >= 0)  # negative area: ignored, as pycocotools does
    ious = _masked_iou(predicted, truth)
    matched_gt = np.zeros(truth.valid.shape, dtype=bool)
    true_positive = np.zeros(predicted.valid.shape, dtype=bool)
    rows = np.arange(len(ious))
    last = ious.shape[2] - 1
    for rank in range(ious.shape[1]):
        candidates = np.where(
            ~matched_gt & (ious[:, rank, :] >= threshold - IOU_TOLERANCE), ious[:, rank, :], -1.0
        )
        # pycocotools keeps the last box among equal best overlaps: argmax over the reversed boxes.
        choice = last - candidates[:, ::-1].argmax(axis=1)
        found = predicted.valid[:, rank] & (candidates[rows, choice] >= 0)
        true_positive[:, rank] = found
        matched_gt[rows[found], choice[found]] = True
    # Rank-major order = descending confidence, ties in sample order.
    tp = true_positive.T.ravel()[ranked.T.ravel()]
    if tp.size == 0:
        return 0.0
    tp_cum = np.cumsum(tp, dtype=np.float64)
    fp_cum = np.cumsum(~tp, dtype=np.float64)
    recall = tp_cum / n_truth
    precision = tp_cum / (tp_cum + fp_cum + np.spacing(1))
    envelope = np.flip(np.maximum.accumulate(np.flip(precision)))
    at = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")
    sampled = np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


def pycocotools_ap50(
    predicted: Sequence[Sequence[Sequence[float]]], truth: Sequence[Sequence[Sequence[float]]]
) -> float | None:
    """The same AP50 computed by pycocotools itself: the reference ``coco_ap50`` is tested and timed against.

    Boxes are scaled to a 1000-pixel image (COCO wants pixels; the area range is "all"), confidence is
    1 / (1 + rank in the answer)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box):
        return [box[0] * 1000, box[1] * 1000, (box[2] - box[0]) * 1000, (box[3] - box[1]) * 1000]

    boxes = [(image + 1, box) for image, sample in enumerate(truth) for box in sample]
    annotations = [
        {
            "id": n + 1,
            "image_id": image,
            "category_id": 1,
            "bbox": xywh(box),
            "iscrowd": 0,
            "area": xywh(box)[2] * xywh(box)[3],
        }
        for n, (image, box) in enumerate(boxes)
    ]
    detections = [
        {"image_id": image + 1, "category_id": 1, "bbox": xywh(box), "score": 1.0 / (1 + rank)}
        for image, sample in enumerate(predicted)
        for rank, box in enumerate(sample)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        reference = COCO()
        reference.dataset = {
            "images": [{"id": i + 1} for i in range(len(truth))],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "finding"}],
        }
        reference.createIndex()
        evaluator = COCOeval(reference, reference.loadRes(detections), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    value = float(evaluator.stats[1])
    return value if value >= 0 else None


def first_box_iou(predicted: PaddedBoxes, truth: PaddedBoxes) -> np.ndarray:
    """Per sample: the best IoU of the answer's first box with any ground-truth box (0 without a box)."""
    ious = _masked_iou(predicted, truth)[:, 0, :]
    best = ious.max(axis=1) if ious.shape[1] else np.zeros(len(ious))
    return np.where(predicted.valid[:, 0] & (truth.counts > 0), np.clip(best, 0.0, None), 0.0)


@dataclass(frozen=True)
class GroundingScores:
    per_sample_ap: np.ndarray
    first_box_iou: np.ndarray
    predicted_counts: np.ndarray
    paper_map: float
    coco_ap50: float | None
    accuracy_at_05: float
    mean_iou: float


def score_grounding(
    answers: Sequence[str | None], truth_boxes: Sequence[Sequence[Sequence[float]]]
) -> GroundingScores:
    """All grounding metrics for answers (text) against their ground-truth boxes, as fractions (0-1).

    Acc@0.5 counts a sample as correct when its first box overlaps a ground-truth box at IoU >= 0.5 (the
    usual referring-expression accuracy); mean IoU averages that first box's best IoU (0 without a box).
    """
    predicted = pad_boxes(parse_answer_boxes(answers))
    truth = pad_boxes(truth_boxes)
    ap = paper_average_precision(predicted, truth)
    first_iou = first_box_iou(predicted, truth)
    count = len(ap)
    return GroundingScores(
        per_sample_ap=ap,
        first_box_iou=first_iou,
        predicted_counts=predicted.counts,
        paper_map=float(ap.mean()) if count else 0.0,
        coco_ap50=coco_ap50(predicted, truth),
        accuracy_at_05=float((first_iou >= IOU_THRESHOLD - IOU_TOLERANCE).mean()) if count else 0.0,
        mean_iou=float(first_iou.mean()) if count else 0.0,
    )
