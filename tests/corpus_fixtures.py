"""A small, hand-made set of canonical tables (all seven sources + the two LLM outputs) for corpus tests.

Every case the corpus must handle is here once, with the expected outcome in a comment:
- MIMIC patient 10000003 is in Chest ImaGenome's *test* split but MIMIC's train split: their MIMIC
  training rows must go (the anatomical evaluation set holds them).
- MIMIC patient 10000005 is in MIMIC's test split but Chest ImaGenome's train split: their Chest
  ImaGenome training row must go.
- CheXpert test patient patient00005 also has a CheXpert-Plus training image: it must go.
- Clean reports with status nothing_left / failed, a study without labels, an image without region
  boxes, a VinDr image without findings (a detection negative), a malformed conversation.
Images are tiny files at their real relative paths, so the image check has something to find.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from radvlm_pipeline.layout import CLEAN_REPORTS, CONVERSATIONS, StorageLayout, image_root
from radvlm_pipeline.schema import (
    CHEXPERT_LABELS,
    CLEAN_REPORTS_SCHEMA,
    CONVERSATIONS_SCHEMA,
    TABLE_SCHEMAS,
)
from radvlm_pipeline.sources.base import SourceTables, write_tables


def _frame(rows: list[dict], table: str) -> pl.DataFrame:
    return (
        pl.from_dicts(rows, schema=TABLE_SCHEMAS[table])
        if rows
        else pl.DataFrame(schema=TABLE_SCHEMAS[table])
    )


def _image(source, dataset, image_id, subject, study, split, path):
    return dict(
        source=source,
        dataset=dataset,
        image_id=image_id,
        subject_id=subject,
        study_id=study,
        split=split,
        path=path,
        original_path=path,
        width=1000,
        height=800,
        view="PA",
        sex="F",
    )


def _labels(source, study, subject, split, positives, image_id=None):
    return dict(
        source=source,
        study_id=study,
        subject_id=subject,
        image_id=image_id,
        split=split,
        **{name: name in positives for name in CHEXPERT_LABELS},
    )


def _box(source, image_id, box_id, kind, label, box):
    x1, y1, x2, y2 = box
    return dict(
        source=source,
        image_id=image_id,
        box_id=box_id,
        kind=kind,
        label=label,
        category=None,
        x1=x1,
        y1=y1,
        x2=x2,
        y2=y2,
        annotators=1,
        score=1.0,
    )


def _mimic_path(subject, study, image_id):
    return f"files/p{subject[:2]}/p{subject}/s{study}/{image_id}.jpg"


MIMIC = [  # (image, subject, study, split)
    ("m1a", "10000001", "50000001", "train"),
    ("m1b", "10000001", "50000001", "train"),
    ("m2a", "10000002", "50000002", "train"),  # report: nothing_left
    ("m3a", "10000003", "50000003", "train"),  # patient in Chest ImaGenome test -> held out
    ("m4a", "10000004", "50000004", "train"),  # report: failed; no labels
    ("m5a", "10000005", "50000005", "test"),
    ("m6a", "10000006", "50000006", "test"),
]
MIMIC_LABELS = {
    "50000001": {"Cardiomegaly", "Pleural Effusion"},
    "50000002": {"No Finding"},
    "50000003": {"Edema"},
    "50000005": {"Lung Opacity"},
    "50000006": {"No Finding", "Support Devices"},
}
REPORT_STATUS = {"50000002": "nothing_left", "50000004": "failed"}

CHEXPERT = [  # (image, patient, split)
    ("c1", "patient00001", "train"),
    ("c2", "patient00002", "train"),
    ("c3", "patient00003", "train"),
    ("c5", "patient00005", "test"),
    ("c6", "patient00006", "test"),
]
CHEXPERT_POSITIVES = {
    "c1": {"Atelectasis"},
    "c2": set(),
    "c3": {"No Finding"},
    "c5": {"Edema", "Pneumothorax"},
    "c6": {"No Finding"},
}
CHEXPERT_PLUS = [
    ("cp1", "patient00001", "train"),
    ("cp2", "patient00002", "train"),
    ("cp5", "patient00005", "train"),
]  # cp5: a CheXpert test patient -> held out

IMAGENOME = [  # (image, subject, split); images are MIMIC images
    ("g1", "10000001", "train"),
    ("g2", "10000002", "train"),
    ("g3", "10000003", "test"),
    ("g5", "10000005", "train"),  # MIMIC test patient -> held out
    ("g7", "10000007", "train"),  # no region boxes
    ("g8", "10000008", "test"),
]
REGIONS = {
    "right lung": (0.10, 0.15, 0.48, 0.80),
    "left lung": (0.52, 0.15, 0.90, 0.80),
    "cardiac silhouette": (0.35, 0.45, 0.70, 0.78),
}

VINDR = [("v1", "train"), ("v2", "train"), ("v3", "train"), ("v4", "test"), ("v5", "test")]
VINDR_FINDINGS = {  # v2 and v5: no finding -> detection negatives
    "v1": [
        ("Cardiomegaly", (0.30, 0.50, 0.75, 0.85)),
        ("Pleural effusion", (0.05, 0.70, 0.30, 0.95)),
        ("Pleural effusion", (0.70, 0.72, 0.95, 0.96)),
    ],
    "v3": [("Nodule/Mass", (0.201, 0.305, 0.258, 0.3549))],
    "v4": [("Aortic enlargement", (0.45, 0.25, 0.60, 0.40))],
}

MS_CXR = [("ms1", "10000001", "50000001", "train"), ("ms6", "10000006", "50000006", "test")]
MS_PHRASES = {
    "ms1": [
        ("Left basilar opacity", [(0.55, 0.60, 0.85, 0.85)]),
        ("Bilateral pleural effusions", [(0.05, 0.70, 0.30, 0.95), (0.70, 0.70, 0.95, 0.95)]),
    ],
    "ms6": [("Enlarged cardiac silhouette", [(0.33, 0.42, 0.72, 0.80)])],
}
PADCHEST = [("pg1.png", "pp1", "train"), ("pg2.png", "pp2", "test")]
PADCHEST_PHRASES = {
    "pg1.png": [
        ("Cardiomegaly.", [(0.30, 0.45, 0.72, 0.80)]),
        ("Right pleural effusion.", [(0.08, 0.60, 0.40, 0.92)]),
    ],
    "pg2.png": [("Hiatal hernia.", [(0.40, 0.50, 0.60, 0.70)])],
}


@dataclass(frozen=True)
class Roots:
    data_root: Path
    storage_root: Path


def _conversation(question: str, answer: str, rounds: int = 2) -> list[dict]:
    turns = []
    for index in range(rounds):
        turns += [{"from": "human", "value": f"{question} ({index + 1})"}, {"from": "gpt", "value": answer}]
    return turns


def write_corpus_inputs(data_root: Path, storage_root: Path) -> Roots:
    """Write every table the corpus reads, and a file for every image the tables name."""
    tables: dict[str, SourceTables] = {}

    mimic_images = [
        _image("mimic_cxr", "mimic_cxr", i, s, st, sp, _mimic_path(s, st, i)) for i, s, st, sp in MIMIC
    ]
    studies = {(s, st, sp) for _, s, st, sp in MIMIC}
    tables["mimic_cxr"] = SourceTables(
        images=_frame(mimic_images, "images"),
        reports=_frame(
            [
                dict(
                    source="mimic_cxr",
                    study_id=st,
                    subject_id=s,
                    split=sp,
                    report=f"Report of {st}.",
                    findings=f"Report of {st}.",
                    path=f"files/p10/p{s}/s{st}.txt",
                )
                for s, st, sp in sorted(studies)
            ],
            "reports",
        ),
        labels=_frame(
            [
                _labels("mimic_cxr", st, s, sp, MIMIC_LABELS[st])
                for s, st, sp in sorted(studies)
                if st in MIMIC_LABELS
            ],
            "labels",
        ),
    )
    tables["chexpert"] = SourceTables(
        images=_frame(
            [
                _image(
                    "chexpert",
                    "chexpert",
                    i,
                    p,
                    f"{p}/study1",
                    sp,
                    f"CheXpert-v1.0-small/{sp}/{p}/study1/{i}.jpg",
                )
                for i, p, sp in CHEXPERT
            ],
            "images",
        ),
        labels=_frame(
            [
                _labels("chexpert", f"{p}/study1", p, sp, CHEXPERT_POSITIVES[i], image_id=i)
                for i, p, sp in CHEXPERT
            ],
            "labels",
        ),
    )
    tables["chexpert_plus"] = SourceTables(
        images=_frame(
            [
                _image("chexpert_plus", "chexpert_plus", i, p, f"{p}/study2", sp, f"{sp}/{p}/study2/{i}.jpg")
                for i, p, sp in CHEXPERT_PLUS
            ],
            "images",
        ),
    )
    tables["chest_imagenome"] = SourceTables(
        images=_frame(
            [
                _image("chest_imagenome", "mimic_cxr", i, s, f"5{s[1:]}", sp, _mimic_path(s, f"5{s[1:]}", i))
                for i, s, sp in IMAGENOME
            ],
            "images",
        ),
        boxes=_frame(
            [
                _box("chest_imagenome", i, f"{i}_{name.replace(' ', '_')}", "region", name, box)
                for i, _, _ in IMAGENOME
                if i != "g7"
                for name, box in REGIONS.items()
            ],
            "boxes",
        ),
    )
    tables["vindr_cxr"] = SourceTables(
        images=_frame(
            [_image("vindr_cxr", "vindr_cxr_png", i, i, i, sp, f"{sp}/{i}.png") for i, sp in VINDR], "images"
        ),
        boxes=_frame(
            [
                _box("vindr_cxr", i, f"{i}_{k}", "finding", label, box)
                for i, found in VINDR_FINDINGS.items()
                for k, (label, box) in enumerate(found)
            ],
            "boxes",
        ),
    )
    tables["ms_cxr"] = SourceTables(
        images=_frame(
            [_image("ms_cxr", "mimic_cxr", i, s, st, sp, _mimic_path(s, st, i)) for i, s, st, sp in MS_CXR],
            "images",
        ),
        boxes=_frame(
            [
                _box("ms_cxr", i, f"{i}_{p}_{b}", "phrase", phrase, box)
                for i, phrases in MS_PHRASES.items()
                for p, (phrase, boxes) in enumerate(phrases)
                for b, box in enumerate(boxes)
            ],
            "boxes",
        ),
    )
    tables["padchest_gr"] = SourceTables(
        images=_frame(
            [
                _image("padchest_gr", "padchest_gr", i, p, i, sp, f"images_grounding/{i}")
                for i, p, sp in PADCHEST
            ],
            "images",
        ),
        boxes=_frame(
            [
                _box("padchest_gr", i, f"{i}#{p}#{b}", "phrase", phrase, box)
                for i, phrases in PADCHEST_PHRASES.items()
                for p, (phrase, boxes) in enumerate(phrases)
                for b, box in enumerate(boxes)
            ],
            "boxes",
        ),
    )
    for source, source_tables in tables.items():
        write_tables(source_tables, StorageLayout(storage_root), source)
        for row in source_tables.images.iter_rows(named=True):
            path = image_root(row["dataset"], data_root, storage_root) / row["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\x89PNG fixture")

    clean = [
        dict(
            source="mimic_cxr",
            study_id=st,
            subject_id=s,
            image_id=None,
            split=sp,
            report=f"Report of {st}.",
            report_clean=None if st in REPORT_STATUS else f"Clean report of {st}.",
            status=REPORT_STATUS.get(st, "ok"),
            cache_key=f"ck-{st}",
            backend="offline-rules",
        )
        for s, st, sp in sorted(studies)
    ]
    clean += [
        dict(
            source="chexpert_plus",
            study_id=f"{p}/study2",
            subject_id=p,
            image_id=i,
            split=sp,
            report=f"Report of {i}.",
            report_clean=f"Clean report of {i}.",
            status="ok",
            cache_key=f"ck-{i}",
            backend="offline-rules",
        )
        for i, p, sp in CHEXPERT_PLUS
    ]
    StorageLayout(storage_root).llm_dir.mkdir(parents=True, exist_ok=True)
    pl.from_dicts(clean, schema=CLEAN_REPORTS_SCHEMA).write_parquet(
        StorageLayout(storage_root).llm_output(CLEAN_REPORTS)
    )

    conversations = [
        (
            "mimic_cxr",
            "m1a",
            "50000001",
            "train",
            "standard",
            _conversation("<image>\nWhat do you see?", "An enlarged heart."),
        ),
        (
            "mimic_cxr",
            "m1b",
            "50000001",
            "train",
            "standard",
            _conversation("Is the heart enlarged?", "Yes.", rounds=3),
        ),
        (
            "mimic_cxr",
            "m2a",
            "50000002",
            "train",
            "standard",  # starts with the assistant: malformed
            [{"from": "gpt", "value": "Hello."}, {"from": "human", "value": "Hi."}],
        ),
        (
            "mimic_cxr",
            "m3a",
            "50000003",
            "train",
            "standard",
            _conversation("Any edema?", "Yes, mild edema."),
        ),
        ("mimic_cxr", "m5a", "50000005", "test", "standard", _conversation("Any opacity?", "Yes.")),
        (
            "ms_cxr",
            "ms1",
            "50000001",
            "train",
            "grounded",
            _conversation("Where is the opacity?", "At [0.55, 0.60, 0.85, 0.85]."),
        ),
        (
            "ms_cxr",
            "ms6",
            "50000006",
            "test",
            "grounded",
            _conversation("Where is the heart?", "At [0.33, 0.42, 0.72, 0.80]."),
        ),
        (
            "padchest_gr",
            "pg1.png",
            "pg1.png",
            "train",
            "grounded",
            _conversation("Where is the effusion?", "At [0.08, 0.60, 0.40, 0.92]."),
        ),
    ]
    pl.from_dicts(
        [
            dict(
                source=s,
                image_id=i,
                study_id=st,
                split=sp,
                kind=k,
                conversation=c,
                facts={
                    "report": f"Report of {i}.",
                    "abnormalities": "No Finding",
                    "view": "PA",
                    "sex": "F",
                    "observations": "none",
                },
                cache_key=f"conv-{i}",
                backend="offline-rules",
            )
            for s, i, st, sp, k, c in conversations
        ],
        schema=CONVERSATIONS_SCHEMA,
    ).write_parquet(StorageLayout(storage_root).llm_output(CONVERSATIONS))
    return Roots(data_root=data_root, storage_root=storage_root)


# Expected outcome of building the fixture with the default Table 1 (see the cases at the top).
EXPECTED_TRAINING_ROWS = {
    "report_generation__mimic_cxr": 2,  # m1a, m1b (m2a nothing_left, m4a failed, m3a held out)
    "report_generation__chexpert_plus": 2,  # cp1, cp2 (cp5 held out)
    "classification__mimic_cxr": 3,  # m1a, m1b, m2a (m4a has no labels, m3a held out)
    "classification__chexpert": 3,
    "anatomical_grounding__chest_imagenome": 2,  # g1, g2 (g5 held out, g7 has no regions)
    "abnormality_grounding__vindr_cxr": 9,  # 3 (image, finding) samples x 3
    "abnormality_detection__vindr_cxr": 6,  # v1, v2 (negative), v3 x 2
    "phrase_grounding__ms_cxr": 6,  # 2 phrases x 3
    "phrase_grounding__padchest_gr": 4,  # 2 phrases x 2
    "conversation__mimic_cxr": 2,  # m1a, m1b (m2a malformed, m3a held out)
    "grounded_conversation__ms_cxr": 4,
    "grounded_conversation__padchest_gr": 4,
}
EXPECTED_EVAL_ROWS = {
    "report_generation": 2,
    "classification": 2,
    "anatomical_grounding": 2,
    "abnormality_grounding": 1,
    "phrase_grounding": 1,
    "conversation": 1,
    "grounded_conversation": 1,
}


def build_fixture_corpus(base: Path, config=None) -> Roots:
    """Inputs written, evaluation sets and every Table 1 partition built (2 rows per shard by default)."""
    from radvlm_pipeline.corpus.build import build_eval_sets, build_partition
    from radvlm_pipeline.corpus.table import CorpusConfig

    config = config or CorpusConfig(rows_per_shard=2)
    roots = write_corpus_inputs(base / "data", base / "storage")
    build_eval_sets(roots.storage_root, config)
    for row in config.rows:
        build_partition(roots.storage_root, row.key, config)
    return roots
