"""What must hold of the written corpus, checked from the files alone (shards + evaluation sets).

Each check returns a ``CheckOutcome`` whose ``examples`` name the offending rows, so a failure in the
Dagster UI says what to look at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from radvlm_pipeline.boxes import parse_boxes
from radvlm_pipeline.corpus.build import subjects_of
from radvlm_pipeline.corpus.shards import eval_paths, shard_paths
from radvlm_pipeline.layout import CorpusLayout, image_root

MAX_EXAMPLES = 20
BOX_TOLERANCE = 0.005 + 1e-9  # answers carry two decimals


@dataclass
class CheckOutcome:
    checked: int
    problems: int
    examples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.problems == 0


def _corpus_rows(root: CorpusLayout, with_eval: bool = True) -> pl.LazyFrame | None:
    paths = shard_paths(root) + (eval_paths(root) if with_eval else [])
    return pl.scan_parquet(paths) if paths else None


def _outcome(checked: int, problems: list[str], count: int | None = None) -> CheckOutcome:
    return CheckOutcome(checked, len(problems) if count is None else count, problems[:MAX_EXAMPLES])


def no_held_out_patient_in_training(root: CorpusLayout) -> CheckOutcome:
    """No training row comes from a test split, and no training row's patient is in an evaluation set
    (patients compared within a namespace, so MIMIC-CXR, Chest ImaGenome and MS-CXR count as one)."""
    training = _corpus_rows(root, with_eval=False)
    if training is None:
        return CheckOutcome(0, 0)
    checked = training.select(pl.len()).collect().item()
    from_test = training.filter(pl.col("split") == "test").select("id").collect()["id"].to_list()
    problems = [f"{row_id}: built from a test-split image" for row_id in from_test]
    if eval_paths(root):
        held = subjects_of(pl.scan_parquet(eval_paths(root))).select("namespace", "subject_id").unique()
        leaked = (
            subjects_of(training)
            .join(held, on=["namespace", "subject_id"], how="semi")
            .select("id", "namespace", "subject_id")
            .unique()
            .sort("id")
            .collect()
        )
        problems += [f"{r[0]}: patient {r[2]} ({r[1]}) is in an evaluation set" for r in leaked.iter_rows()]
    return _outcome(checked, problems)


def images_exist(root: CorpusLayout, data_root: Path, storage_root: Path) -> CheckOutcome:
    """Every image a row (training or evaluation) points to is a file under its configured root."""
    rows = _corpus_rows(root)
    if rows is None:
        return CheckOutcome(0, 0)
    images = rows.select("image_dataset", "image_path").unique().sort("image_dataset", "image_path").collect()
    roots = {
        name: image_root(name, data_root, storage_root) for name in images["image_dataset"].unique().to_list()
    }
    missing = [
        f"{dataset}/{path}: {roots[dataset] / path} does not exist"
        for dataset, path in images.iter_rows()
        if not (roots[dataset] / path).is_file()
    ]
    return _outcome(images.height, missing)


def boxes_in_range(root: CorpusLayout) -> CheckOutcome:
    """Every target box lies in [0, 1] with x1 < x2 and y1 < y2."""
    rows = _corpus_rows(root)
    if rows is None:
        return CheckOutcome(0, 0)
    boxes = (
        rows.select("id", "target_boxes")
        .explode("target_boxes")
        .drop_nulls("target_boxes")
        .with_columns(pl.col("target_boxes").arr.to_struct(["x1", "y1", "x2", "y2"]))
        .unnest("target_boxes")
    )
    inside = pl.all_horizontal([pl.col(c).is_between(0.0, 1.0) for c in ("x1", "y1", "x2", "y2")])
    ordered = (pl.col("x1") < pl.col("x2")) & (pl.col("y1") < pl.col("y2"))
    checked = boxes.select(pl.len()).collect().item()
    bad = boxes.filter(~(inside & ordered).fill_null(False)).sort("id").collect()
    problems = [
        f"{r['id']}: box [{r['x1']}, {r['y1']}, {r['x2']}, {r['y2']}]"
        for r in bad.head(MAX_EXAMPLES).iter_rows(named=True)
    ]
    return _outcome(checked, problems, bad.height)


def answers_parse_back(root: CorpusLayout) -> CheckOutcome:
    """The boxes the evaluation's parser reads from each answer are the row's target boxes (to two
    decimals, in order); rows without target boxes are not concerned."""
    rows = _corpus_rows(root)
    if rows is None:
        return CheckOutcome(0, 0)
    answered = (
        rows.filter(pl.col("target_boxes").is_not_null())
        .select(
            "id",
            "target_boxes",
            answer=pl.col("conversation")
            .list.eval(pl.element().filter(pl.element().struct.field("from") == "gpt").struct.field("value"))
            .list.join("\n"),
        )
        .sort("id")
        .collect()
    )
    problems = []
    for row_id, targets, answer in answered.iter_rows():
        parsed = parse_boxes(answer)
        matches = len(parsed) == len(targets) and all(
            abs(p - t) <= BOX_TOLERANCE for box, target in zip(parsed, targets) for p, t in zip(box, target)
        )
        if not matches:
            problems.append(f"{row_id}: answer gives {parsed}, built from {[list(t) for t in targets]}")
    return _outcome(answered.height, problems)
