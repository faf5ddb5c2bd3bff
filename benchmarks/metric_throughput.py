"""How fast the evaluation metrics score stored answers (no generation): answers per second per metric.

Grounding is the one with a target: 2,000 answers (parsing included) well under a second. pycocotools
is timed on the same answers for comparison with our vectorised COCO AP50.

Run: ``.venv/bin/python benchmarks/metric_throughput.py [--answers 2000] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np

from radvlm_pipeline.boxes import format_box, parse_boxes
from radvlm_pipeline.evaluation.classification import score_classification
from radvlm_pipeline.evaluation.grounding import pycocotools_ap50, score_grounding
from radvlm_pipeline.evaluation.report_generation import ReportMetricSettings, bertscore, rouge_l
from radvlm_pipeline.schema import CHEXPERT_LABELS

REPORT_WORDS = (
    "the heart size is normal no pleural effusion or pneumothorax mild bibasilar atelectasis "
    "right picc line tip in the svc lungs are clear small left effusion"
).split()


def grounding_case(rng: np.random.Generator, count: int):
    truth, answers = [], []
    for _ in range(count):
        corner = rng.uniform(0, 0.7, (int(rng.integers(1, 4)), 2))
        boxes = np.concatenate([corner, corner + rng.uniform(0.05, 0.3, corner.shape)], axis=1).round(2)
        predicted = (boxes + rng.normal(0, 0.03, boxes.shape))[: int(rng.integers(0, len(boxes) + 2))]
        truth.append(boxes.tolist())
        answers.append("It is located at " + ", ".join(format_box(np.clip(b, 0, 1)) for b in predicted) + ".")
    return answers, truth


def classification_case(rng: np.random.Generator, count: int):
    labels = [
        list(rng.choice(CHEXPERT_LABELS, size=int(rng.integers(1, 4)), replace=False)) for _ in range(count)
    ]
    answers = [
        ("No pneumothorax. " if i % 3 else "") + "The image shows " + ", ".join(l.lower() for l in ls) + "."
        for i, ls in enumerate(labels)
    ]
    return answers, labels


def reports(rng: np.random.Generator, count: int) -> list[str]:
    return [" ".join(rng.choice(REPORT_WORDS, size=40)) + "." for _ in range(count)]


def best_of(repeats: int, function: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bertscore-answers", type=int, default=200)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    n = args.answers

    answers, truth = grounding_case(rng, n)
    grounding = best_of(args.repeats, lambda: score_grounding(answers, truth))
    parsed = [parse_boxes(answer) for answer in answers]
    coco = best_of(1, lambda: pycocotools_ap50(parsed, truth))
    cls_answers, cls_truth = classification_case(rng, n)
    classification = best_of(args.repeats, lambda: score_classification(cls_answers, cls_truth))
    refs, hyps = reports(rng, n), reports(rng, n)
    rouge_l(refs[:2], hyps[:2])
    rouge = best_of(1, lambda: rouge_l(refs, hyps))
    m = args.bertscore_answers
    bertscore(refs[:2], hyps[:2], ReportMetricSettings())  # imports and first load out of the timing
    bert = best_of(1, lambda: bertscore(refs[:m], hyps[:m], ReportMetricSettings()))

    rows = [
        (f"grounding: parse + paper mAP + COCO AP50 + Acc@0.5 + mIoU ({n} answers)", grounding, n),
        (f"pycocotools AP50, index + evaluate + accumulate (same {n} answers, for comparison)", coco, n),
        (f"classification: keywords+negation and substring, F1 ({n} answers)", classification, n),
        (f"Rouge-L, rouge-score ({n} report pairs)", rouge, n),
        (f"BERTScore, all-MiniLM-L6-v2 on CPU, model load included ({m} report pairs)", bert, m),
    ]
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print("| metric | seconds | answers/s |\n|---|---|---|")
    for name, seconds, count in rows:
        print(f"| {name} | {seconds:.3f} | {count / seconds:,.0f} |")


if __name__ == "__main__":
    main()
