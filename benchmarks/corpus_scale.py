"""Paper-scale corpus build: ~1.1M rows from synthetic canonical tables of the paper's sizes.

    .venv/bin/python benchmarks/corpus_scale.py [--work /tmp/corpus-scale] [--keep]

Writes the canonical tables (seven sources, clean reports, conversations) at the sizes of paper Table 1
(Chest ImaGenome with 29 region boxes on 240,000 images, i.e. ~7M box rows), then builds the evaluation
sets, the twelve Table 1 partitions, the manifest and the DuckDB catalog in a fresh process, and reports
wall time and peak RSS of that process (targets: <= 60 s, <= 4 GiB). Checks and the LLaVA export run
after, timed separately. The synthetic text is repetitive, so shard sizes are smaller than real ones.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from radvlm_pipeline.layout import CLEAN_REPORTS, CONVERSATIONS, StorageLayout  # noqa: E402
from radvlm_pipeline.schema import CHEXPERT_LABELS, CLEAN_REPORTS_SCHEMA, CONVERSATIONS_SCHEMA, TABLE_SCHEMAS  # noqa: E402
from radvlm_pipeline.sources.base import SourceTables, write_tables  # noqa: E402

REGIONS = [f"region {i}" for i in range(29)]
VINDR_CLASSES = [
    "Aortic enlargement",
    "Cardiomegaly",
    "Pleural effusion",
    "Nodule/Mass",
    "Lung Opacity",
    "ILD",
]
RNG = np.random.default_rng(0)


def conform(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    schema = TABLE_SCHEMAS[table]
    return frame.select(
        [(pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c) for c, t in schema.items()]
    )


def images(
    source: str,
    dataset: str,
    image_id: pl.Expr,
    subject: pl.Expr,
    study: pl.Expr,
    split: pl.Expr,
    path: pl.Expr,
    n: int,
) -> pl.DataFrame:
    frame = pl.DataFrame({"i": np.arange(n)})
    return conform(
        frame.select(
            source=pl.lit(source),
            dataset=pl.lit(dataset),
            image_id=image_id,
            subject_id=subject,
            study_id=study,
            split=split,
            path=path,
            original_path=path,
            width=pl.lit(2000),
            height=pl.lit(2000),
            view=pl.lit("PA"),
        ),
        "images",
    )


def labels(frame: pl.DataFrame) -> pl.DataFrame:
    draws = RNG.random((frame.height, len(CHEXPERT_LABELS))) < 0.12
    return conform(
        frame.with_columns([pl.Series(n, draws[:, k]) for k, n in enumerate(CHEXPERT_LABELS)]), "labels"
    )


def boxes(frame: pl.DataFrame, source: str, kind: str) -> pl.DataFrame:
    """``frame``: image_id, box_id, label, k (any int used to spread the coordinates)."""
    k = pl.col("k")
    return conform(
        frame.with_columns(
            source=pl.lit(source),
            kind=pl.lit(kind),
            x1=(k % 40) / 100,
            y1=(k % 37) / 100,
            x2=(k % 40) / 100 + 0.3 + (k % 7) / 100,
            y2=(k % 37) / 100 + 0.4,
            annotators=pl.lit(1),
            score=pl.lit(1.0),
        ),
        "boxes",
    )


def conversations(frame: pl.DataFrame, rounds: int = 6) -> pl.Series:
    """``rounds`` question/answer pairs per row (~1 KB), as the LLM stage writes them."""
    turns = (
        frame.select("image_id")
        .with_row_index("row")
        .join(pl.DataFrame({"t": np.arange(2 * rounds)}), how="cross")
    )
    turns = turns.with_columns(
        **{"from": pl.when(pl.col("t") % 2 == 0).then(pl.lit("human")).otherwise(pl.lit("gpt"))},
        value=pl.when(pl.col("t") % 2 == 0)
        .then(
            pl.format(
                "Question {} about the heart, lungs and pleura of image {}?",
                pl.col("t") // 2,
                pl.col("image_id"),
            )
        )
        .otherwise(
            pl.format(
                "Answer {}: the cardiac silhouette is normal, there is no effusion; image {}.",
                pl.col("t") // 2,
                pl.col("image_id"),
            )
        ),
    )
    nested = (
        turns.sort("row", "t").group_by("row", maintain_order=True).agg(pl.struct("from", "value").alias("c"))
    )
    return nested["c"]


def write_inputs(storage: Path) -> dict[str, int]:
    sizes = {}
    # MIMIC-CXR: 2 frontal images per study, 5 studies per patient; 1,641 test studies (3,282 images).
    train_studies, test_studies = 118_956, 1_641
    n = 2 * (train_studies + test_studies)
    study = pl.col("i") // 2
    is_test = study >= train_studies
    subject = pl.when(is_test).then(20_000_000 + study).otherwise(10_000_000 + study // 5).cast(pl.String)
    mimic = images(
        "mimic_cxr",
        "mimic_cxr",
        pl.format("mimic{}", pl.col("i")),
        subject,
        (50_000_000 + study).cast(pl.String),
        pl.when(is_test).then(pl.lit("test")).otherwise(pl.lit("train")),
        pl.format("files/p1x/p{}/s{}/mimic{}.jpg", subject, 50_000_000 + study, pl.col("i")),
        n,
    )
    per_study = mimic.unique("study_id", maintain_order=True).select(
        "source", "study_id", "subject_id", "split"
    )
    write_tables(SourceTables(images=mimic, labels=labels(per_study)), StorageLayout(storage), "mimic_cxr")
    status = np.where(
        RNG.random(per_study.height) < 0.977,
        "ok",
        np.where(RNG.random(per_study.height) < 0.5, "nothing_left", "failed"),
    )
    report = (
        "The heart size is normal. The mediastinal and hilar contours are unremarkable. There is no focal "
        "consolidation, pleural effusion or pneumothorax. Mild degenerative changes of the spine, study {}."
    )
    clean_mimic = per_study.with_columns(
        image_id=pl.lit(None, dtype=pl.String),
        report=pl.format(report, pl.col("study_id")),
        status=pl.Series(status),
        cache_key=pl.format("ck{}", pl.col("study_id")),
        backend=pl.lit("bench"),
    ).with_columns(report_clean=pl.when(pl.col("status") == "ok").then(pl.col("report")))
    sizes["mimic_cxr images"] = mimic.height

    # CheXpert: 191,027 train + 518 test images, labels per image; CheXpert-Plus: 178,368 images.
    n = 191_027 + 518
    patient = pl.format("patient{}", pl.col("i") // 3)
    chexpert = images(
        "chexpert",
        "chexpert",
        pl.format("cx{}", pl.col("i")),
        patient,
        pl.format("cxs{}", pl.col("i")),
        pl.when(pl.col("i") >= 191_027).then(pl.lit("test")).otherwise(pl.lit("train")),
        pl.format("CheXpert-v1.0-small/train/cx{}.jpg", pl.col("i")),
        n,
    )
    write_tables(
        SourceTables(
            images=chexpert,
            labels=labels(chexpert.select("source", "image_id", "study_id", "subject_id", "split")),
        ),
        StorageLayout(storage),
        "chexpert",
    )
    plus = images(
        "chexpert_plus",
        "chexpert_plus",
        pl.format("cp{}", pl.col("i")),
        patient,
        pl.format("cps{}", pl.col("i")),
        pl.lit("train"),
        pl.format("train/cp{}.jpg", pl.col("i")),
        178_368,
    )
    write_tables(SourceTables(images=plus), StorageLayout(storage), "chexpert_plus")
    clean_plus = (
        plus.select("source", "study_id", "subject_id", "image_id", "split")
        .with_columns(
            report=pl.format(report, pl.col("image_id")),
            status=pl.lit("ok"),
            cache_key=pl.format("ck{}", pl.col("image_id")),
            backend=pl.lit("bench"),
        )
        .with_columns(report_clean=pl.col("report"))
    )
    StorageLayout(storage).llm_dir.mkdir(parents=True, exist_ok=True)
    pl.concat([clean_mimic, clean_plus], how="diagonal").select(
        [pl.col(c).cast(t) for c, t in CLEAN_REPORTS_SCHEMA.items()]
    ).write_parquet(StorageLayout(storage).llm_output(CLEAN_REPORTS))

    # Chest ImaGenome: 240,000 MIMIC images (10,000 test) x 29 regions, capped to 80,000 in training.
    n = 240_000
    genome = images(
        "chest_imagenome",
        "mimic_cxr",
        pl.format("ig{}", pl.col("i")),
        (10_000_000 + pl.col("i") // 10).cast(pl.String),
        (60_000_000 + pl.col("i")).cast(pl.String),
        pl.when(pl.col("i") % 24 == 0).then(pl.lit("test")).otherwise(pl.lit("train")),
        pl.format("files/p1x/ig{}.jpg", pl.col("i")),
        n,
    )
    regions = (
        genome.select("image_id").with_row_index("k").join(pl.DataFrame({"label": REGIONS}), how="cross")
    )
    regions = regions.with_columns(
        box_id=pl.format("{}_{}", pl.col("image_id"), pl.col("label")),
        k=pl.col("k").cast(pl.Int64) + pl.col("label").str.len_chars(),
    )
    write_tables(
        SourceTables(images=genome, boxes=boxes(regions, "chest_imagenome", "region")),
        StorageLayout(storage),
        "chest_imagenome",
    )
    sizes["chest_imagenome region boxes"] = regions.height

    # VinDr-CXR: 15,000 train + 3,000 test; 4,600 train and 900 test images with findings.
    vindr = images(
        "vindr_cxr",
        "vindr_cxr_png",
        pl.format("vd{}", pl.col("i")),
        pl.format("vd{}", pl.col("i")),
        pl.format("vd{}", pl.col("i")),
        pl.when(pl.col("i") >= 15_000).then(pl.lit("test")).otherwise(pl.lit("train")),
        pl.format("train/vd{}.png", pl.col("i")),
        18_000,
    )
    abnormal = pl.DataFrame({"i": np.r_[np.arange(4_600), np.arange(15_000, 15_900)]})
    findings = (
        abnormal.join(pl.DataFrame({"c": np.arange(len(VINDR_CLASSES))}), how="cross")
        .filter(pl.col("c") <= (pl.col("i") % 6))
        .join(pl.DataFrame({"b": [0, 1]}), how="cross")
        .filter((pl.col("b") == 0) | (pl.col("i") % 2 == 0))
    )
    findings = findings.with_columns(
        image_id=pl.format("vd{}", pl.col("i")),
        label=pl.col("c").replace_strict(dict(enumerate(VINDR_CLASSES))),
        box_id=pl.format("vd{}_{}_{}", pl.col("i"), pl.col("c"), pl.col("b")),
        k=pl.col("i") + 7 * pl.col("c") + pl.col("b"),
    )
    write_tables(
        SourceTables(images=vindr, boxes=boxes(findings, "vindr_cxr", "finding")),
        StorageLayout(storage),
        "vindr_cxr",
    )

    # MS-CXR (900 train + 170 test images, 1-2 phrases each) and PadChest-GR (2,600 + 800 images).
    for source, dataset, train, test, phrases_per in (
        ("ms_cxr", "mimic_cxr", 900, 170, 2),
        ("padchest_gr", "padchest_gr", 2_600, 800, 3),
    ):
        frame = images(
            source,
            dataset,
            pl.format(f"{source}{{}}", pl.col("i")),
            (10_000_000 + pl.col("i") * 3).cast(pl.String),
            pl.format(f"{source}s{{}}", pl.col("i")),
            pl.when(pl.col("i") >= train).then(pl.lit("test")).otherwise(pl.lit("train")),
            pl.format(f"images/{source}{{}}.png", pl.col("i")),
            train + test,
        )
        phrases = (
            pl.DataFrame({"i": np.arange(train + test)})
            .join(pl.DataFrame({"p": np.arange(phrases_per)}), how="cross")
            .filter(pl.col("p") <= pl.col("i") % phrases_per)
        )
        phrases = phrases.with_columns(
            image_id=pl.format(f"{source}{{}}", pl.col("i")),
            label=pl.format("Opacity number {} in the {} lower lobe.", pl.col("p"), pl.col("i")),
            box_id=pl.format(f"{source}{{}}_{{}}", pl.col("i"), pl.col("p")),
            k=pl.col("i") + pl.col("p"),
        )
        write_tables(
            SourceTables(images=frame, boxes=boxes(phrases, source, "phrase")),
            StorageLayout(storage),
            source,
        )
        if source == "ms_cxr":
            ms_images = frame
        else:
            padchest_images = frame

    # Conversations: 80,312 + 523 standard (MIMIC-CXR), 858 + 157 (MS-CXR) and 2,225 (PadChest-GR) grounded.
    picks = [
        (mimic.filter(pl.col("split") == "train").head(80_312), "standard"),
        (mimic.filter(pl.col("split") == "test").head(523), "standard"),
        (ms_images.filter(pl.col("split") == "train").head(858), "grounded"),
        (ms_images.filter(pl.col("split") == "test").head(157), "grounded"),
        (padchest_images.filter(pl.col("split") == "train").head(2_225), "grounded"),
    ]
    frames = [
        chosen.select(
            "source",
            "image_id",
            "study_id",
            "split",
            kind=pl.lit(kind),
            cache_key=pl.format("conv{}", pl.col("image_id")),
            backend=pl.lit("bench"),
            facts=pl.struct(
                report=pl.format("Report of {}.", pl.col("image_id")),
                abnormalities=pl.lit("No Finding"),
                view=pl.lit("PA"),
                sex=pl.lit("F"),
                observations=pl.lit("none"),
            ),
        ).with_columns(conversation=conversations(chosen))
        for chosen, kind in picks
    ]
    conversations_table = pl.concat(frames)
    conversations_table.select(
        [
            (pl.col(c) if c in conversations_table.columns else pl.lit(None)).cast(t)  # facts: none here
            for c, t in CONVERSATIONS_SCHEMA.items()
        ]
    ).write_parquet(StorageLayout(storage).llm_output(CONVERSATIONS))
    sizes["conversations"] = sum(f.height for f in frames)
    return sizes


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # ru_maxrss is KiB on Linux


def build(storage: Path) -> dict:
    """In its own process: the measured part."""
    from radvlm_pipeline.corpus import checks
    from radvlm_pipeline.corpus.build import build_eval_sets, build_partition
    from radvlm_pipeline.corpus.catalog import write_catalog
    from radvlm_pipeline.corpus.llava import export_llava, image_roots
    from radvlm_pipeline.corpus.shards import write_corpus_manifest
    from radvlm_pipeline.corpus.table import CorpusConfig

    config = CorpusConfig()
    timings = {}
    start = time.perf_counter()
    build_eval_sets(storage, config)
    timings["eval_sets_s"] = time.perf_counter() - start
    for row in config.rows:
        began = time.perf_counter()
        build_partition(storage, row.key, config)
        timings[f"{row.key}_s"] = time.perf_counter() - began
    root = StorageLayout(storage).corpus
    manifest = write_corpus_manifest(root)
    write_catalog(root)
    result = {
        "build_wall_s": time.perf_counter() - start,
        "build_peak_rss_gib": peak_rss_gib(),
        "training_rows": manifest["training_rows"],
        "evaluation_rows": manifest["evaluation_rows"],
        "shard_bytes": sum(f["bytes"] for p in manifest["partitions"].values() for f in p["files"]),
    }
    began = time.perf_counter()
    outcomes = {
        "held_out": checks.no_held_out_patient_in_training(root),
        "boxes": checks.boxes_in_range(root),
        "answers": checks.answers_parse_back(root),
    }
    result["checks_s"] = time.perf_counter() - began
    result["checks_passed"] = {name: o.passed for name, o in outcomes.items()}
    began = time.perf_counter()
    export_llava(
        root,
        image_roots(
            ["mimic_cxr", "chexpert", "chexpert_plus", "vindr_cxr_png", "padchest_gr"],
            storage / "data",
            storage,
        ),
    )
    result["llava_export_s"] = time.perf_counter() - began
    result["overall_peak_rss_gib"] = peak_rss_gib()
    result["steps_s"] = {k: round(v, 2) for k, v in timings.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/corpus-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the generated tables and corpus")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    storage = args.work / "storage"
    if args.build_only:
        print(json.dumps(build(storage)))
        return
    shutil.rmtree(args.work, ignore_errors=True)
    began = time.perf_counter()
    sizes = write_inputs(storage)
    generated = time.perf_counter() - began
    child = subprocess.run(
        [sys.executable, __file__, "--work", str(args.work), "--build-only"],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result.update(
        generate_inputs_s=round(generated, 1),
        inputs=sizes,
        machine=f"{platform.machine()}, "
        f"{__import__('os').cpu_count()} CPUs, Python {platform.python_version()}, polars {pl.__version__}",
    )
    print(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
