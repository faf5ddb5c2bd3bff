"""Small canonical source tables for the LLM-stage tests, written the way the source assets write them.

Reports read like MIMIC-CXR and CheXpert-Plus ones, with the comparison and history sentences prior-study
removal exists for; one report says nothing about the current image, one study has only a lateral image,
one PadChest-GR box points at an image that is missing.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from radvlm_pipeline.layout import StorageLayout
from radvlm_pipeline.schema import BOXES_SCHEMA, CHEXPERT_LABELS, IMAGES_SCHEMA, LABELS_SCHEMA, REPORTS_SCHEMA
from radvlm_pipeline.sources.base import SourceTables, write_tables

MIMIC_REPORTS = {
    "s50000001": "Compared with the prior radiograph of ___, there is a new moderate left pleural effusion. "
    "The heart size is unchanged and mildly enlarged. No pneumothorax.",
    "s50000002": "Endotracheal tube tip lies 4 cm above the carina. Nasogastric tube courses below the diaphragm. "
    "Bibasilar atelectasis, slightly improved since yesterday.",
    "s50000003": "No significant interval change since the study of ___.",
    "s50000004": "Lungs are clear. No pleural effusion or pneumothorax. Heart size is normal. "
    "Findings were discussed with Dr. ___ by telephone.",
    "s50000005": "Right lower lobe consolidation concerning for pneumonia. Small right pleural effusion.",
    "s50000006": "Stable mild cardiomegaly. Pulmonary vascular congestion with mild interstitial edema.",
}
MIMIC_SPLITS = {
    "s50000001": "train",
    "s50000002": "train",
    "s50000003": "train",
    "s50000004": "train",
    "s50000005": "test",
    "s50000006": "test",
}
MIMIC_POSITIVES = {
    "s50000001": ["Pleural Effusion", "Cardiomegaly"],
    "s50000002": ["Atelectasis", "Support Devices"],
    "s50000003": [],
    "s50000004": ["No Finding"],
    "s50000005": ["Consolidation", "Pneumonia", "Pleural Effusion"],
    "s50000006": ["Cardiomegaly", "Edema"],
}
CHEXPERT_PLUS_REPORTS = {
    "patient00001/study1/view1_frontal.jpg": "Interval increase in the right pleural effusion. Left lung is clear.",
    "patient00002/study1/view1_frontal.jpg": "No acute cardiopulmonary process.",
    "patient00003/study2/view1_frontal.jpg": "As compared to the previous exam, the lines are unchanged.",
}
MS_CXR_PHRASES = {  # image -> (study, [(phrase, box)])
    "d-ms-1": ("s50000001", [("moderate left pleural effusion", (0.55, 0.60, 0.92, 0.88))]),
    "d-ms-2": (
        "s50000005",
        [
            ("right lower lobe consolidation", (0.10, 0.55, 0.42, 0.85)),
            ("right lower lobe consolidation", (0.12, 0.40, 0.30, 0.52)),
        ],
    ),
}
PADCHEST_PHRASES = {
    "pc-1.png": [("cardiomegaly", "cardiomegaly", (0.35, 0.45, 0.80, 0.78))],
    "pc-2.png": [
        ("right apical nodule", "nodule", (0.15, 0.12, 0.30, 0.25)),
        ("left costophrenic angle blunting", "costophrenic angle blunting", (0.70, 0.75, 0.90, 0.92)),
    ],
    "pc-missing.png": [("hilar enlargement", "hilar enlargement", (0.4, 0.3, 0.6, 0.5))],
}


def _labels_row(source: str, study_id: str, subject_id: str, split: str, positives: list[str], image_id=None):
    return {
        "source": source,
        "study_id": study_id,
        "subject_id": subject_id,
        "image_id": image_id,
        "split": split,
        **{name: name in positives for name in CHEXPERT_LABELS},
    }


def mimic_tables() -> SourceTables:
    images, reports, labels = [], [], []
    for n, (study, text) in enumerate(MIMIC_REPORTS.items()):
        subject, split = f"1000000{n}", MIMIC_SPLITS[study]
        views = ["LATERAL"] if study == "s50000006" else ["AP", "PA", "LATERAL"] if n % 2 else ["AP"]
        for k, view in enumerate(views):
            images.append(
                {
                    "source": "mimic_cxr",
                    "dataset": "mimic_cxr",
                    "image_id": f"d-{study}-{k}",
                    "subject_id": subject,
                    "study_id": study,
                    "split": split,
                    "path": f"files/p10/p{subject}/{study}/d-{study}-{k}.jpg",
                    "original_path": f"files/p10/p{subject}/{study}/d-{study}-{k}.jpg",
                    "width": 2544,
                    "height": 3056,
                    "view": view,
                    "sex": "F" if n % 2 else "M",
                }
            )
        reports.append(
            {
                "source": "mimic_cxr",
                "study_id": study,
                "subject_id": subject,
                "image_id": None,
                "split": split,
                "report": text,
                "findings": text,
                "impression": None,
                "path": f"files/p10/p{subject}/{study}.txt",
            }
        )
        labels.append(_labels_row("mimic_cxr", study, subject, split, MIMIC_POSITIVES[study]))
    for image_id, (study, _) in MS_CXR_PHRASES.items():  # MS-CXR's images are MIMIC-CXR images
        images.append(
            {**images[0], "image_id": image_id, "study_id": study, "view": "PA", "split": MIMIC_SPLITS[study]}
        )
    return SourceTables(
        images=pl.DataFrame(images, schema=IMAGES_SCHEMA),
        reports=pl.DataFrame(reports, schema=REPORTS_SCHEMA),
        labels=pl.DataFrame(labels, schema=LABELS_SCHEMA),
    )


def chexpert_plus_tables() -> SourceTables:
    reports = [
        {
            "source": "chexpert_plus",
            "study_id": path.rsplit("/", 1)[0],
            "subject_id": path.split("/")[0],
            "image_id": path,
            "split": "train",
            "report": text,
            "findings": text,
            "impression": None,
            "path": "df_chexpert_plus_240401.csv",
        }
        for path, text in CHEXPERT_PLUS_REPORTS.items()
    ]
    return SourceTables(reports=pl.DataFrame(reports, schema=REPORTS_SCHEMA))


def _box(source: str, image_id: str, n: int, phrase: str, category, box) -> dict:
    return {
        "source": source,
        "image_id": image_id,
        "box_id": f"{image_id}-{n}",
        "kind": "phrase",
        "label": phrase,
        "category": category,
        "x1": box[0],
        "y1": box[1],
        "x2": box[2],
        "y2": box[3],
        "px_x1": None,
        "px_y1": None,
        "px_x2": None,
        "px_y2": None,
        "annotators": 1,
        "score": 1.0,
    }


def ms_cxr_tables() -> SourceTables:
    images, boxes = [], []
    mimic_images = {row["image_id"]: row for row in mimic_tables().images.iter_rows(named=True)}
    for image_id, (_, phrases) in MS_CXR_PHRASES.items():
        images.append({**mimic_images[image_id], "source": "ms_cxr"})
        boxes += [_box("ms_cxr", image_id, n, phrase, None, box) for n, (phrase, box) in enumerate(phrases)]
    return SourceTables(
        images=pl.DataFrame(images, schema=IMAGES_SCHEMA), boxes=pl.DataFrame(boxes, schema=BOXES_SCHEMA)
    )


def padchest_gr_tables() -> SourceTables:
    images, boxes, reports = [], [], []
    for n, (image_id, phrases) in enumerate(PADCHEST_PHRASES.items()):
        split = "test" if n == 1 else "train"
        if image_id != "pc-missing.png":
            images.append(
                {
                    "source": "padchest_gr",
                    "dataset": "padchest_gr",
                    "image_id": image_id,
                    "subject_id": f"pat{n}",
                    "study_id": f"st{n}",
                    "split": split,
                    "path": image_id,
                    "original_path": image_id,
                    "width": 1024,
                    "height": 1024,
                    "view": "PA",
                    "sex": "F",
                }
            )
            reports.append(
                {
                    "source": "padchest_gr",
                    "study_id": f"st{n}",
                    "subject_id": f"pat{n}",
                    "image_id": image_id,
                    "split": split,
                    "report": " ".join(f"{p[0].capitalize()}." for p in phrases),
                    "findings": None,
                    "impression": None,
                    "path": "grounded_reports_20240819.json",
                }
            )
        boxes += [
            _box("padchest_gr", image_id, k, phrase, category, box)
            for k, (phrase, category, box) in enumerate(phrases)
        ]
    return SourceTables(
        images=pl.DataFrame(images, schema=IMAGES_SCHEMA),
        reports=pl.DataFrame(reports, schema=REPORTS_SCHEMA),
        boxes=pl.DataFrame(boxes, schema=BOXES_SCHEMA),
    )


SOURCE_TABLES = {
    "mimic_cxr": mimic_tables,
    "chexpert_plus": chexpert_plus_tables,
    "ms_cxr": ms_cxr_tables,
    "padchest_gr": padchest_gr_tables,
}


def write_sources(storage_root: Path) -> None:
    for source, build in SOURCE_TABLES.items():
        write_tables(build(), StorageLayout(storage_root), source)


def all_reports() -> pl.DataFrame:
    return pl.concat([mimic_tables().reports, chexpert_plus_tables().reports])


def many_reports(count: int) -> pl.DataFrame:
    """``count`` distinct MIMIC-CXR reports (for resume, concurrency and benchmark runs)."""
    texts = list(MIMIC_REPORTS.values())
    rows = [
        {
            "source": "mimic_cxr",
            "study_id": f"s6{n:07d}",
            "subject_id": f"1{n:07d}",
            "image_id": None,
            "split": "train",
            "report": f"{texts[n % len(texts)]} Study number {n}.",
            "findings": None,
            "impression": None,
            "path": f"files/s6{n:07d}.txt",
        }
        for n in range(count)
    ]
    return pl.DataFrame(rows, schema=REPORTS_SCHEMA)
