"""PadChest-GR (grounded_reports_20240819) in its released layout, as RadVLM's code reads it::

    padchest-gr/
      grounded_reports_20240819.json   [{StudyID, ImageID, PreviousStudyID, PreviousImageID, findings: [
                                          {sentence_en, sentence_es, abnormal, boxes, extra_boxes, labels,
                                           locations, progression}]}]; boxes normalised [x1, y1, x2, y2]
      master_table.csv                 one row per (study, sentence): StudyID, ImageID, label, ..., split
                                       (train / validation / test), PatientID, ..., PatientSex_DICOM, ...
      PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv
                                       PadChest's image table: ImageID, ..., Projection (PA, AP, L), ...,
                                       Report (Spanish), ...; it also lists images PadChest-GR left out
      images_grounding/{ImageID}       16-bit grayscale PNG

Sentences are short bilingual pairs, as in the release; a finding's box sits where it is drawn.
Some grounded entries are lateral images so the reader's frontal filter has work; their studies'
frontal images and some lateral companions appear in the PadChest table only.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from radvlm_pipeline.datasets import PADCHEST_GR
from radvlm_pipeline.sample_data.common import (
    PAPER_MIMIC_STUDIES,
    Case,
    PlacedFinding,
    Variant,
    render_radiograph,
    rng_for,
    sample_case,
    to_uint16,
)
from radvlm_pipeline.sample_data.files import FileJobs, pool_of, write_pooled, write_table
from radvlm_pipeline.sources.padchest_gr import GROUNDED_JSON, IMAGE_FOLDERS, LABELS_CSV, MASTER_TABLE

ENTRIES = 66
FORCED_ROWS = 10  # the first entries are frontal with findings, so the dirty faults land on known rows
PATIENT_SPLITS = ("train", "train", "train", "validation", "test")  # cycled over patients
PAPER_STUDIES, PAPER_PADCHEST_IMAGES = 4_555, 160_861

# Finding key -> (English sentence, Spanish sentence, PadChest label, location), as the release writes them.
GROUNDED_SENTENCES = {
    "cardiomegaly": ("Cardiomegaly.", "Cardiomegalia.", "cardiomegaly", "cardiac"),
    "effusion": (
        "{Side} pleural effusion.",
        "Derrame pleural {lado}.",
        "pleural effusion",
        "costophrenic angle",
    ),
    "pneumothorax": ("{Side} apical pneumothorax.", "Neumotórax apical {lado}.", "pneumothorax", "apical"),
    "consolidation": (
        "Consolidation in the {side} lower lobe.",
        "Consolidación en lóbulo inferior {lado}.",
        "consolidation",
        "lower lobe",
    ),
    "atelectasis": (
        "Laminar atelectasis at the {side} base.",
        "Atelectasia laminar basal {lado}.",
        "laminar atelectasis",
        "lower lobe",
    ),
    "edema": (
        "Signs of interstitial edema.",
        "Signos de edema intersticial.",
        "pulmonary edema",
        "bilateral",
    ),
    "pneumonia": (
        "{Side} lung infiltrate suggestive of pneumonia.",
        "Infiltrado pulmonar {lado} sugestivo de neumonía.",
        "pneumonia",
        "lung field",
    ),
    "nodule": ("{Side} pulmonary nodule.", "Nódulo pulmonar {lado}.", "nodule", "upper lobe"),
    "fracture": ("{Side} rib fracture.", "Fractura costal {lado}.", "rib fracture", "rib"),
    "pleural_thickening": (
        "{Side} apical pleural thickening.",
        "Engrosamiento pleural apical {lado}.",
        "apical pleural thickening",
        "apical",
    ),
    "aortic_enlargement": ("Aortic elongation.", "Elongación aórtica.", "aortic elongation", "aortic"),
    "device": (
        "Central venous catheter in place.",
        "Catéter venoso central.",
        "central venous catheter",
        "superior vena cava",
    ),
}
# Finding key a report denies -> the normal sentence pair (no box).
NORMAL_SENTENCES = {
    "effusion": ("No pleural effusion.", "Sin derrame pleural."),
    "pneumothorax": ("No pneumothorax.", "Sin neumotórax."),
    "consolidation": ("No consolidation.", "Sin consolidaciones."),
    "cardiomegaly": ("Normal cardiac silhouette.", "Silueta cardiaca normal."),
    "nodule": ("No pulmonary nodules.", "Sin nódulos pulmonares."),
}
NOTHING_FOUND = ("No significant findings.", "Sin hallazgos significativos.")
SIDES = {"left": "izquierdo", "right": "derecho"}
PROGRESSION = ("stable", "improved", "worsened")

# The faults Variant.DIRTY injects, as (file, row) -> the reason the reader must quarantine it with.
DIRT = {
    PADCHEST_GR.key: {
        (GROUNDED_JSON, 1): "unreadable_image",  # PNG truncated to half
        (GROUNDED_JSON, 2): "missing_image",  # PNG not written
        (GROUNDED_JSON, 3): "box_outside_image",  # a box at x 1.2-1.5
        (GROUNDED_JSON, 4): "inverted_box",  # a box with x2 < x1
        (GROUNDED_JSON, 5): "empty_findings",  # findings: []
        (GROUNDED_JSON, 6): "missing_split",  # master_table.csv rows with split blank
        (GROUNDED_JSON, 9): "duplicate_row",  # a second entry for row 8's ImageID
    },
}

MASTER_COLUMNS = (
    "StudyID",
    "ImageID",
    "label",
    "boxes_count",
    "extra_boxes_count",
    "locations",
    "prior_study",
    "progression_status",
    "prior_imageID",
    "sentence_en",
    "sentence_es",
    "study_is_benchmark",
    "study_is_validation",
    "split",
    "PatientID",
    "patient_is_benchmark",
    "PatientBirth",
    "PatientSex_DICOM",
    "StudyDate_DICOM",
    "StudyDate",
    "PatientAge",
    "label_group",
    "Year",
)
LABELS_COLUMNS = (
    "ImageID",
    "ImageDir",
    "StudyDate_DICOM",
    "StudyID",
    "PatientID",
    "PatientBirth",
    "PatientSex_DICOM",
    "ViewPosition_DICOM",
    "Projection",
    "Modality_DICOM",
    "Manufacturer_DICOM",
    "PhotometricInterpretation_DICOM",
    "PixelRepresentation_DICOM",
    "PixelAspectRatio_DICOM",
    "SpatialResolution_DICOM",
    "BitsStored_DICOM",
    "WindowCenter_DICOM",
    "WindowWidth_DICOM",
    "Rows_DICOM",
    "Columns_DICOM",
    "XRayTubeCurrent_DICOM",
    "Exposure_DICOM",
    "ExposureInuAs_DICOM",
    "ExposureTime_DICOM",
    "RelativeXRayExposure_DICOM",
    "ReportID",
    "Report",
    "MethodLabel",
    "Labels",
    "Localizations",
    "LabelsLocalizationsBySentence",
    "LabelCUIS",
    "LocalizationsCUIS",
)
VIEW_POSITIONS = {"PA": "POSTEROANTERIOR", "AP": "ANTEROPOSTERIOR", "L": "LATERAL"}


def _digits(seed: int, *keys: object, length: int) -> str:
    """A long decimal id like the release's (StudyID, PatientID, the stem of an ImageID)."""
    value = int.from_bytes(hashlib.sha256(repr(("padchest", seed, *keys)).encode()).digest(), "big")
    return str(value)[:length].rjust(length, "0")


def image_id_for(seed: int, study: int | str, projection: str) -> str:
    tail = _digits(seed, "tail", study, projection, length=8)
    return f"216840111366964{_digits(seed, 'image', study, projection, length=30)}_{tail[:2]}-{tail[2:5]}-{tail[5:]}.png"


def _projection(case: Case) -> str:
    return "L" if case.view == "LATERAL" else case.view


def _findings(case: Case, rng: np.random.Generator) -> list[dict]:
    """The grounded sentences of one study: one per finding (with its box), then a few normal ones."""
    findings = [_grounded(p, rng, case.has_prior) for p in case.findings]
    present = {p.finding.key for p in case.findings}
    normal = [
        NORMAL_SENTENCES[f.key] for f in case.negatives if f.key in NORMAL_SENTENCES and f.key not in present
    ]
    if not findings and not normal:
        normal = [NOTHING_FOUND]
    for english, spanish in normal[:2]:
        findings.append(
            {
                "sentence_en": english,
                "sentence_es": spanish,
                "abnormal": False,
                "boxes": [],
                "extra_boxes": [],
                "labels": [],
                "locations": [],
                "progression": None,
            }
        )
    return findings


def _grounded(placed: PlacedFinding, rng: np.random.Generator, has_prior: bool) -> dict:
    english, spanish, label, location = GROUNDED_SENTENCES[placed.finding.key]
    side = placed.side
    x1, y1, x2, y2 = placed.box
    jitter = rng.uniform(-0.01, 0.01, size=4)
    box = [round(float(v), 4) for v in np.clip(np.array([x1, y1, x2, y2]) + jitter, 0.0, 1.0)]
    return {
        "sentence_en": english.format(side=side, Side=side.capitalize()),
        "sentence_es": spanish.format(lado=SIDES[side]),
        "abnormal": True,
        "boxes": [box],
        "extra_boxes": [],
        "labels": [label],
        "locations": [f"{side} {location}" if "{" in english else location],
        "progression": PROGRESSION[int(rng.integers(len(PROGRESSION)))] if has_prior else None,
    }


def write(out_root: Path, seed: int, variant: Variant) -> dict[str, dict[str, int]]:
    root = PADCHEST_GR.root(out_root)
    image_dir = root / IMAGE_FOLDERS[0]
    image_dir.mkdir(parents=True, exist_ok=True)
    dirty = variant is Variant.DIRTY
    entries: list[dict] = []
    master_rows: list[dict] = []
    table_rows: list[dict] = []
    patient = -1
    for study in range(ENTRIES):
        rng = rng_for(seed, "padchest", study)
        if study < FORCED_ROWS:
            case = sample_case(rng, lateral_fraction=0.0, normal_fraction=0.0)
        else:
            case = sample_case(rng, lateral_fraction=0.15, normal_fraction=0.25)
        patient += 0 if study % 9 == 4 else 1  # now and then a patient's second study
        split = PATIENT_SPLITS[patient % len(PATIENT_SPLITS)]
        image_id = image_id_for(seed, study, _projection(case))
        findings = _findings(case, rng)
        width, height = int(rng.integers(100, 129)), int(rng.integers(112, 149))
        if dirty:
            findings, split = _inject_fault(study + 1, findings, split)
        entry = {
            "StudyID": _digits(seed, "study", study, length=39),
            "ImageID": image_id,
            "PreviousStudyID": _digits(seed, "study", study, "prior", length=39) if case.has_prior else None,
            "PreviousImageID": None,
            "findings": findings,
        }
        entries.append(entry)
        meta = _study_metadata(seed, study, patient, case, rng)
        master_rows += [_master_row(entry, finding, split, meta) for finding in findings or [None]]
        table_rows.append(_table_row(entry, case, meta, width, height, findings))
        if case.frontal and rng.random() < 0.35:  # the study's lateral, which PadChest-GR left out
            lateral = {**entry, "ImageID": image_id_for(seed, study, "L")}
            table_rows.append(
                _table_row(lateral, Case(case.sex, case.age, "LATERAL"), meta, width, height, findings)
            )
        if not (dirty and study == 1):
            pixels = to_uint16(render_radiograph(case, width, height, rng), bits=12)
            Image.fromarray(pixels).save(image_dir / image_id, format="PNG")
        if dirty and study == 0:
            path = image_dir / image_id
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    if dirty:
        entries.insert(8, json.loads(json.dumps(entries[7])))  # row 9 repeats row 8's image
    _write_json(root / GROUNDED_JSON, entries)
    _write_table(root / MASTER_TABLE, master_rows, MASTER_COLUMNS)
    _write_table(root / LABELS_CSV, table_rows, LABELS_COLUMNS)
    return {
        PADCHEST_GR.key: {
            "grounded_entries": len(entries),
            "master_rows": len(master_rows),
            "padchest_rows": len(table_rows),
            "images": len(list(image_dir.iterdir())),
        }
    }


def _inject_fault(row: int, findings: list[dict], split: str) -> tuple[list[dict], str]:
    """Rows 1, 2 and 9 are faulted by the caller (image file, duplicate); see ``DIRT``."""
    boxed = next((f for f in findings if f["boxes"]), None)
    if row == 3:
        boxed["boxes"][0] = [1.2, 0.3, 1.5, 0.6]
    elif row == 4:
        x1, y1, x2, y2 = boxed["boxes"][0]
        boxed["boxes"][0] = [x2, y1, x1, y2]
    elif row == 5:
        findings = []
    elif row == 6:
        split = ""
    return findings, split


def _study_metadata(seed: int, study: int, patient: int, case: Case, rng: np.random.Generator) -> dict:
    year = 2009 + int(rng.integers(0, 9))
    date = f"{year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    return {
        "PatientID": _digits(seed, "patient", patient, length=39),
        "PatientSex_DICOM": case.sex,
        "PatientBirth": str(year - case.age),
        "PatientAge": str(case.age),
        "StudyDate_DICOM": date,
        "Year": str(year),
        "ReportID": _digits(seed, "report", study, length=18),
    }


def _master_row(entry: dict, finding: dict | None, split: str, meta: dict) -> dict:
    finding = finding or {
        "sentence_en": "",
        "sentence_es": "",
        "boxes": [],
        "extra_boxes": [],
        "labels": [],
        "locations": [],
        "progression": None,
    }
    label = finding["labels"][0] if finding["labels"] else "Normal"
    return {
        "StudyID": entry["StudyID"],
        "ImageID": entry["ImageID"],
        "label": label,
        "boxes_count": str(len(finding["boxes"])),
        "extra_boxes_count": str(len(finding["extra_boxes"])),
        "locations": ", ".join(finding["locations"]),
        "prior_study": str(entry["PreviousStudyID"] is not None),
        "progression_status": finding["progression"] or "",
        "prior_imageID": entry["PreviousImageID"] or "",
        "sentence_en": finding["sentence_en"],
        "sentence_es": finding["sentence_es"],
        "study_is_benchmark": "False",
        "study_is_validation": str(split == "validation"),
        "split": split,
        "PatientID": meta["PatientID"],
        "patient_is_benchmark": "False",
        "PatientBirth": meta["PatientBirth"],
        "PatientSex_DICOM": meta["PatientSex_DICOM"],
        "StudyDate_DICOM": meta["StudyDate_DICOM"],
        "StudyDate": f"{meta['StudyDate_DICOM'][:4]}-{meta['StudyDate_DICOM'][4:6]}-{meta['StudyDate_DICOM'][6:]}",
        "PatientAge": meta["PatientAge"],
        "label_group": label.capitalize(),
        "Year": meta["Year"],
    }


def _table_row(entry: dict, case: Case, meta: dict, width: int, height: int, findings: list[dict]) -> dict:
    projection = _projection(case)
    labels = sorted({label for f in findings for label in f["labels"]}) or ["normal"]
    return {
        "ImageID": entry["ImageID"],
        "ImageDir": "0",
        "StudyDate_DICOM": meta["StudyDate_DICOM"],
        "StudyID": entry["StudyID"],
        "PatientID": meta["PatientID"],
        "PatientBirth": meta["PatientBirth"],
        "PatientSex_DICOM": meta["PatientSex_DICOM"],
        "ViewPosition_DICOM": VIEW_POSITIONS[projection],
        "Projection": projection,
        "Modality_DICOM": "CR",
        "Manufacturer_DICOM": "PhilipsMedicalSystems",
        "PhotometricInterpretation_DICOM": "MONOCHROME2",
        "PixelRepresentation_DICOM": "0",
        "PixelAspectRatio_DICOM": "",
        "SpatialResolution_DICOM": "0.143",
        "BitsStored_DICOM": "12",
        "WindowCenter_DICOM": "2048",
        "WindowWidth_DICOM": "4096",
        "Rows_DICOM": str(height),
        "Columns_DICOM": str(width),
        "XRayTubeCurrent_DICOM": "250",
        "Exposure_DICOM": "4",
        "ExposureInuAs_DICOM": "4000",
        "ExposureTime_DICOM": "16",
        "RelativeXRayExposure_DICOM": "",
        "ReportID": meta["ReportID"],
        "Report": " ".join(f["sentence_es"].lower() for f in findings),
        "MethodLabel": "Physician",
        "Labels": repr(labels),
        "Localizations": repr(sorted({f"loc {loc}" for f in findings for loc in f["locations"]})),
        "LabelsLocalizationsBySentence": repr([[*f["labels"]] or ["normal"] for f in findings]),
        "LabelCUIS": "",
        "LocalizationsCUIS": "",
    }


def _write_table(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    """Blank values as bare empty fields, as the released CSVs write them (polars would quote "")."""
    frame = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String))
    write_table(path, frame.with_columns(pl.all().replace("", None)).write_csv())


def _write_json(path: Path, value: object) -> None:
    write_table(path, json.dumps(value, ensure_ascii=False, indent=1) + "\n")


SCALE_PIXEL_POOL = 16  # distinct 16-bit PNGs the paper-scale root's images cycle through


def _png_pool(seed: int) -> list[tuple[bytes, int, int]]:
    """(16-bit PNG, width, height) of a few cases drawn as the sample's are."""
    pool = []
    for index in range(SCALE_PIXEL_POOL):
        rng = rng_for(seed, "padchest", "pixel pool", index)
        case = sample_case(rng, lateral_fraction=0.0, normal_fraction=0.0)
        width, height = int(rng.integers(100, 129)), int(rng.integers(112, 149))
        buffer = io.BytesIO()
        Image.fromarray(to_uint16(render_radiograph(case, width, height, rng), bits=12)).save(
            buffer, format="PNG"
        )
        pool.append((buffer.getvalue(), width, height))
    return pool


def _png_bytes(seed: int) -> list[bytes]:
    return [png for png, _, _ in pool_of(_png_pool, seed)]


def write_scale(
    out_root: Path, seed: int, studies: int, files: FileJobs | None = None
) -> dict[str, dict[str, int]]:
    """Metadata at paper scale: 4,555 grounded studies and PadChest's 160,861-row image table per
    MIMIC-CXR's 227,835 studies. With ``files`` a 16-bit PNG per grounded image is queued there (the
    table gives its size); otherwise the image folder is there but empty."""
    root = PADCHEST_GR.root(out_root)
    (root / IMAGE_FOLDERS[0]).mkdir(parents=True, exist_ok=True)
    fraction = studies / PAPER_MIMIC_STUDIES
    grounded = max(1, round(PAPER_STUDIES * fraction))
    rng = rng_for(seed, "padchest", "scale")
    keys = list(GROUNDED_SENTENCES)
    entries, master_rows = [], []
    for study in range(grounded):
        chosen = rng.choice(len(keys), size=int(rng.integers(1, 4)), replace=False)
        findings = []
        for index in chosen:
            english, spanish, label, location = GROUNDED_SENTENCES[keys[int(index)]]
            x1, y1 = rng.uniform(0.05, 0.6, size=2)
            box = [
                round(float(v), 4) for v in (x1, y1, x1 + rng.uniform(0.1, 0.35), y1 + rng.uniform(0.1, 0.35))
            ]
            findings.append(
                {
                    "sentence_en": english.format(side="left", Side="Left"),
                    "sentence_es": spanish.format(lado="izquierdo"),
                    "abnormal": True,
                    "boxes": [box],
                    "extra_boxes": [],
                    "labels": [label],
                    "locations": [location],
                    "progression": None,
                }
            )
        entry = {
            "StudyID": _digits(seed, "scale-study", study, length=39),
            "ImageID": image_id_for(seed, f"scale-{study}", "PA"),
            "PreviousStudyID": None,
            "PreviousImageID": None,
            "findings": findings,
        }
        entries.append(entry)
        meta = {
            "PatientID": _digits(seed, "scale-patient", study, length=39),
            "PatientSex_DICOM": "MF"[study % 2],
            "PatientBirth": "1950",
            "PatientAge": "66",
            "StudyDate_DICOM": "20160101",
            "Year": "2016",
        }
        split = PATIENT_SPLITS[study % len(PATIENT_SPLITS)]
        master_rows += [_master_row(entry, finding, split, meta) for finding in findings]
    _write_json(root / GROUNDED_JSON, entries)
    _write_table(root / MASTER_TABLE, master_rows, MASTER_COLUMNS)
    table_size = max(grounded, round(PAPER_PADCHEST_IMAGES * fraction))
    image_ids = [e["ImageID"] for e in entries] + [
        image_id_for(seed, f"scale-other-{i}", "PA") for i in range(table_size - grounded)
    ]
    rows, columns = pl.lit("2800"), pl.lit("2500")
    if files is not None:
        pool = np.arange(grounded) % SCALE_PIXEL_POOL
        sizes = np.array([(width, height) for _, width, height in pool_of(_png_pool, seed)])[pool]
        rows, columns = (
            pl.Series(np.r_[sizes[:, axis], np.full(table_size - grounded, default)]).cast(pl.String)
            for axis, default in ((1, 2800), (0, 2500))
        )
        files.add(
            functools.partial(write_pooled, _png_bytes),
            [
                (f"{PADCHEST_GR.folder}/{IMAGE_FOLDERS[0]}/{image_id}", int(index))
                for image_id, index in zip(image_ids[:grounded], pool, strict=True)
            ],
            "padchest_gr images",
        )
    table = (
        pl.DataFrame({"ImageID": image_ids})
        .with_columns([pl.lit(None, dtype=pl.String).alias(name) for name in LABELS_COLUMNS[1:]])
        .with_columns(
            Projection=pl.Series(
                np.where(np.arange(table_size) < grounded, "PA", rng.choice(["PA", "AP", "L"], table_size))
            ),
            Report=pl.lit("cardiomegalia ."),
            Rows_DICOM=rows,
            Columns_DICOM=columns,
            PatientSex_DICOM=pl.lit("M"),
        )
    )
    write_table(root / LABELS_CSV, table.select(LABELS_COLUMNS).write_csv())
    return {
        PADCHEST_GR.key: {
            "grounded_entries": grounded,
            "master_rows": len(master_rows),
            "padchest_rows": table_size,
        }
    }
