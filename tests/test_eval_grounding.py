"""Grounding metrics: hand-computed per-sample AP, the paper's code ported loop by loop, and pycocotools."""

from __future__ import annotations

import numpy as np
import pytest

from radvlm_pipeline.boxes import format_box
from radvlm_pipeline.evaluation.grounding import (
    coco_ap50,
    pad_boxes,
    paper_average_precision,
    pycocotools_ap50,
    score_grounding,
)

A = [0.1, 0.1, 0.3, 0.3]
B = [0.6, 0.6, 0.9, 0.9]
FAR = [0.4, 0.0, 0.5, 0.05]


def paper_ap(predicted, truth):
    return float(paper_average_precision(pad_boxes([predicted]), pad_boxes([truth]))[0])


@pytest.mark.parametrize(
    "predicted, truth, expected",
    [
        ([], [A], 0.0),  # no answer box
        ([A], [], 0.0),  # nothing to find: the paper's code scores 0 too
        ([A], [A], 1.0),
        ([A, B], [A, B], 1.0),
        ([B, A], [A, B], 1.0),  # order among hits does not matter
        ([FAR, A], [A], 0.5),  # precision 1/2 at recall 1
        ([A, FAR], [A, B], 0.5),  # recall stops at 1/2 with precision 1
        ([A, A], [A, B], 0.5),  # the second A finds its box taken: a false positive
        ([FAR, A, FAR, B], [A, B], 0.5 * 0.5 + 0.5 * 0.5),  # P=1/2 at R=1/2, P=1/2 at R=1
    ],
)
def test_paper_ap_hand_computed(predicted, truth, expected):
    assert paper_ap(predicted, truth) == pytest.approx(expected)


def test_paper_ap_best_match_taken_is_a_false_positive_even_if_another_box_fits():
    # The second box's best overlap is the already-taken first truth box, although it overlaps the
    # second truth box above 0.5 as well: the paper's code counts it as a false positive.
    truth = [[0.0, 0.0, 0.4, 0.4], [0.1, 0.0, 0.5, 0.4]]
    predicted = [[0.0, 0.0, 0.4, 0.4], [0.02, 0.0, 0.42, 0.4]]
    assert paper_ap(predicted, truth) == pytest.approx(0.5)


def _reference_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def reference_paper_ap(predicted, truth, threshold=0.5):
    """The RadVLM evaluation code's per-sample AP, written out loop by loop."""
    if not predicted or not truth:
        return 0.0
    matched, tp, fp = set(), [], []
    for box in predicted:
        ious = [_reference_iou(box, gt) for gt in truth]
        best = int(np.argmax(ious))
        if ious[best] >= threshold and best not in matched:
            matched.add(best)
            tp.append(1), fp.append(0)
        else:
            tp.append(0), fp.append(1)
    tp_cum, fp_cum = np.cumsum(tp), np.cumsum(fp)
    recall = np.concatenate(([0.0], tp_cum / len(truth), [1.0]))
    precision = np.concatenate(([0.0], tp_cum / (tp_cum + fp_cum), [0.0]))
    for i in range(len(precision) - 1, 0, -1):
        precision[i - 1] = max(precision[i - 1], precision[i])
    steps = np.where(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def random_boxes(rng, count):
    corner = rng.uniform(0, 0.7, (count, 2))
    size = rng.uniform(0.05, 0.3, (count, 2))
    return np.concatenate([corner, corner + size], axis=1).tolist()


def inverted(box, axes):
    """``box`` with x1/x2 (axis 0) and / or y1/y2 (axis 1) swapped."""
    x1, y1, x2, y2 = box
    return [x2, y1, x1, y2] if axes == (0,) else [x1, y2, x2, y1] if axes == (1,) else [x2, y2, x1, y1]


def random_case(rng, samples=300, inverted_boxes=False):
    """Truth boxes and noisy, shuffled, partly spurious predictions (unrounded: no IoU lands on 0.5);
    with ``inverted_boxes``, some answers also hold boxes inverted on one axis or both."""
    truth, predicted = [], []
    for _ in range(samples):
        gt = random_boxes(rng, int(rng.integers(1, 4)))
        noisy = [list(np.array(box) + rng.normal(0, 0.03, 4)) for box in gt]
        noisy = [b for b in noisy if b[2] > b[0] and b[3] > b[1]]
        pred = noisy[: int(rng.integers(0, len(noisy) + 1))] + random_boxes(rng, int(rng.integers(0, 3)))
        if inverted_boxes:
            axes = [(0,), (1,), (0, 1)]
            pred += [
                inverted(box, axes[int(rng.integers(3))])
                for box in random_boxes(rng, int(rng.integers(0, 3))) + gt[: int(rng.integers(0, 2))]
            ]
        rng.shuffle(pred)
        truth.append(gt)
        predicted.append(pred)
    return predicted, truth


def test_paper_map_matches_the_reference_loop_on_random_answers():
    rng = np.random.default_rng(7)
    predicted, truth = random_case(rng)
    ours = paper_average_precision(pad_boxes(predicted), pad_boxes(truth))
    expected = [reference_paper_ap(p, t) for p, t in zip(predicted, truth)]
    np.testing.assert_allclose(ours, expected, atol=1e-12)


@pytest.mark.parametrize("seed, inverted_boxes", [(1, False), (2, False), (3, False), (4, True), (5, True)])
def test_coco_ap50_matches_pycocotools(seed, inverted_boxes):
    rng = np.random.default_rng(seed)
    predicted, truth = random_case(rng, samples=200, inverted_boxes=inverted_boxes)
    ours = coco_ap50(pad_boxes(predicted), pad_boxes(truth))
    assert ours == pytest.approx(pycocotools_ap50(predicted, truth), abs=1e-9)


@pytest.mark.parametrize(
    "predicted, expected",
    [
        ([inverted(A, (0,)), A, B], 1.0),  # one axis inverted: negative area, ignored by pycocotools
        ([inverted(A, (1,)), A, B], 1.0),
        ([A, inverted(B, (0,)), B], 1.0),
        ([inverted(A, (0, 1)), A, B], 2 / 3),  # both: positive area, a false positive first
    ],
)
def test_coco_ap50_treats_inverted_answer_boxes_as_pycocotools(predicted, expected):
    assert coco_ap50(pad_boxes([predicted]), pad_boxes([[A, B]])) == pytest.approx(expected)
    assert pycocotools_ap50([predicted], [[A, B]]) == pytest.approx(expected)


def test_coco_ap50_edge_cases():
    assert coco_ap50(pad_boxes([[]]), pad_boxes([[A]])) == 0.0  # no detection at all
    assert coco_ap50(pad_boxes([[A]]), pad_boxes([[]])) is None  # no ground truth: undefined


def test_score_grounding_from_answer_text():
    answers = [
        f"The region is at {format_box(A)}.",  # hit
        f"Found at {format_box(FAR)} and {format_box(B)}.",  # first box misses, second hits
        "I cannot locate it.",  # no box
        f"{format_box([0.1, 0.1, 0.3, 0.25])}",  # IoU 0.75 with A
    ]
    truth = [[A], [B], [A], [A]]
    scores = score_grounding(answers, truth)
    assert scores.per_sample_ap.tolist() == pytest.approx([1.0, 0.5, 0.0, 1.0])
    assert scores.paper_map == pytest.approx(0.625)
    assert scores.accuracy_at_05 == pytest.approx(0.5)
    assert scores.first_box_iou.tolist() == pytest.approx([1.0, 0.0, 0.0, 0.75])
    assert scores.mean_iou == pytest.approx(0.4375)
    assert scores.predicted_counts.tolist() == [1, 2, 0, 1]


def test_two_decimal_boxes_at_exactly_half_overlap_count_as_hits():
    # IoU is exactly 0.5 in decimal arithmetic; floating point alone would land just below.
    truth = [[0.18, 0.31, 0.36, 0.43]]
    answer = format_box([0.22, 0.33, 0.34, 0.42])
    assert score_grounding([answer], [truth]).paper_map == 1.0


def test_oracle_answers_score_100():
    rng = np.random.default_rng(0)
    truth = [
        [[round(v, 2) for v in box] for box in random_boxes(rng, int(rng.integers(1, 4)))] for _ in range(50)
    ]
    answers = [", ".join(format_box(box) for box in boxes) for boxes in truth]
    scores = score_grounding(answers, truth)
    assert (scores.paper_map, scores.coco_ap50, scores.accuracy_at_05) == (1.0, 1.0, 1.0)
    assert scores.mean_iou == pytest.approx(1.0)
