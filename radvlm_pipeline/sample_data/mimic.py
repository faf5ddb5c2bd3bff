"""Synthetic MIMIC-CXR-JPG 2.0.0 (+ MIMIC-CXR 2.0.0 reports), Chest ImaGenome 1.0.0 and MS-CXR 1.0.0, as released.

Written under the data root::

    mimic-cxr/
      mimic-cxr-2.0.0-metadata.csv.gz   dicom_id,subject_id,study_id,PerformedProcedureStepDescription,
                                        ViewPosition,Rows,Columns,StudyDate,StudyTime,...
      mimic-cxr-2.0.0-split.csv.gz      dicom_id,study_id,subject_id,split   (split by patient)
      mimic-cxr-2.0.0-chexpert.csv.gz   subject_id,study_id,<14 labels>      (1.0 / 0.0 / -1.0 / blank)
      files/p10/p10000032/s50414267/<dicom_id>.jpg   8-bit grayscale JPEG, frontal and lateral views
      files/p10/p10000032/s50414267.txt               the study's free-text report
    chest-imagenome/silver_dataset/
      splits/{train,valid,test}.csv     ,subject_id,study_id,dicom_id,path,ViewPosition (own patient split)
      scene_graph/<dicom_id>_SceneGraph.json   objects[] with bbox_name, original_x1..original_y2, ...
    ms-cxr/MS_CXR_Local_Alignment_v1.0.0.csv   dicom_id,category_name,label_text,path,x,y,w,h,
                                               image_width,image_height

The three are one family because Chest ImaGenome and MS-CXR annotate MIMIC-CXR images, as in reality:
both refer to frontal images of this MIMIC-CXR sample, region boxes lie on the drawn anatomy and MS-CXR
phrases and boxes come from the same case as the image's pixels, report and labels. Chest ImaGenome gets
its own patient split, deliberately different from MIMIC-CXR's (the paper's code mixed the two).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from radvlm_pipeline.datasets import CHEST_IMAGENOME, MIMIC_CXR, MS_CXR
from radvlm_pipeline.sample_data.common import (
    REGIONS,
    Case,
    Variant,
    chexpert_values,
    region_box,
    render_radiograph,
    report_sections,
    rng_for,
    sample_case,
    to_uint8,
)
from radvlm_pipeline.schema import CHEXPERT_LABELS

METADATA_FILE = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT_FILE = "mimic-cxr-2.0.0-split.csv.gz"
CHEXPERT_FILE = "mimic-cxr-2.0.0-chexpert.csv.gz"
METADATA_COLUMNS = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
CHEXPERT_COLUMNS = ("subject_id", "study_id", *CHEXPERT_LABELS)

IMAGENOME_SPLIT_FILES = {
    "train": "silver_dataset/splits/train.csv",
    "valid": "silver_dataset/splits/valid.csv",
    "test": "silver_dataset/splits/test.csv",
}
IMAGENOME_SPLIT_COLUMNS = ("", "subject_id", "study_id", "dicom_id", "path", "ViewPosition")
MS_CXR_FILE = "MS_CXR_Local_Alignment_v1.0.0.csv"
MS_CXR_COLUMNS = (
    "dicom_id",
    "category_name",
    "label_text",
    "path",
    "x",
    "y",
    "w",
    "h",
    "image_width",
    "image_height",
)

SUBJECTS = 72
# Study layouts (views, weight): most studies are PA + lateral or a single portable AP, as in MIMIC-CXR.
LAYOUTS = (
    (("PA", "LATERAL"), 0.42),
    (("AP",), 0.28),
    (("PA",), 0.08),
    (("AP", "LATERAL"), 0.10),
    (("PA", "LATERAL", "LL"), 0.05),
    (("AP", "AP"), 0.07),
)
STUDIES_PER_SUBJECT = ((1, 0.5), (2, 0.3), (3, 0.15), (4, 0.05))
SPLIT_SHARES = (("train", 0.6), ("validate", 0.15), ("test", 0.25))  # of subjects; real: 98 / 0.8 / 1.5 %
IMAGENOME_SPLIT_SHARES = (("train", 0.65), ("valid", 0.12), ("test", 0.23))
IMAGENOME_SUBJECT_FRACTION = 0.7
MS_CXR_IMAGES_PER_SPLIT = {"train": 24, "validate": 8, "test": 10}

VIEW_MEANINGS = {
    "PA": "postero-anterior",
    "AP": "antero-posterior",
    "LATERAL": "lateral",
    "LL": "left lateral",
}

# MS-CXR's eight categories cover these findings; label_text is the phrase a radiologist boxed.
MS_CXR_PHRASES = {
    "cardiomegaly": ("Cardiomegaly", ("moderately enlarged heart", "cardiomegaly")),
    "effusion": (
        "Pleural Effusion",
        ("small {side} pleural effusion", "blunting of the {side} costophrenic angle"),
    ),
    "pneumothorax": ("Pneumothorax", ("small {side} apical pneumothorax",)),
    "consolidation": ("Consolidation", ("focal consolidation in the {side} lower lobe",)),
    "atelectasis": ("Atelectasis", ("{side} basilar atelectasis",)),
    "edema": ("Edema", ("interstitial edema",)),
    "pneumonia": ("Pneumonia", ("patchy {side} opacity concerning for pneumonia",)),
}

# The faults Variant.DIRTY injects. Rows appended to a file keep every clean row where it was, so the
# dirty sample is the clean one plus these; ``faults(seed)`` names the exact file and row of each.
DIRT = {
    MIMIC_CXR.key: {
        "duplicate_row": "metadata row repeating the first row's dicom_id (appended)",
        "unreadable_image": "frontal image whose JPEG is truncated to half (appended)",
        "missing_image": "frontal image whose JPEG is not written (appended)",
        "missing_view": "image with ViewPosition blank (appended)",
        "missing_subject": "image with subject_id blank (appended)",
        "missing_split": "a study of its own with no row in the split file (appended)",
        "image_size_mismatch": "frontal image whose metadata Rows disagree with the JPEG (appended)",
        "duplicate_split_row": "split row repeating the first one (appended)",
        "unknown_label_value": "the first test study's label row says Edema=2.0",
        "duplicate_label_row": "label row repeating the first study's (appended)",
        "empty_report": "the first validate study's report has no text under its header",
    },
    CHEST_IMAGENOME.key: {
        "box_outside_image": "a train image's trachea lies right of the image (see faults())",
        "inverted_box": "the same image's aortic arch has x2 < x1",
        "missing_scene_graph": "a train row whose scene graph JSON is not written (appended)",
        "malformed_json": "a train row whose scene graph JSON is truncated (appended)",
        "not_in_mimic_images": "a train row for MIMIC-CXR's unreadable image (appended)",
        "duplicate_row": "train row repeating the first one (appended)",
    },
    MS_CXR.key: {
        "box_outside_image": "a box right of its image (appended)",
        "inverted_box": "a box with negative width (appended)",
        "missing_image_width": "a valid box with image_width blank: the reader takes MIMIC-CXR's (appended)",
        "duplicate_row": "row repeating the first one (appended)",
        "not_in_mimic_images": "a box on MIMIC-CXR's unreadable image (appended)",
    },
}


# --- The MIMIC-CXR plan: patients, studies, images ---------------------------------------------------
@dataclass(frozen=True)
class MimicImage:
    dicom_id: str
    view: str
    width: int
    height: int


@dataclass(frozen=True)
class MimicStudy:
    subject_id: str
    study_id: str
    split: str  # MIMIC-CXR's: train / validate / test
    order: int  # 1 for the patient's first study
    study_date: date
    study_time: str
    case: Case  # the frontal view's case; every image of the study shows the same findings
    images: tuple[MimicImage, ...]

    @property
    def folder(self) -> str:
        return f"files/p{self.subject_id[:2]}/p{self.subject_id}/s{self.study_id}"

    def image_path(self, image: MimicImage) -> str:
        return f"{self.folder}/{image.dicom_id}.jpg"

    @property
    def report_path(self) -> str:
        return f"{self.folder}.txt"

    @property
    def procedure(self) -> str:
        views = {image.view for image in self.images}
        if "LATERAL" in views or "LL" in views:
            return "CHEST (PA AND LAT)" if "PA" in views else "CHEST (AP AND LAT)"
        return "CHEST (PORTABLE AP)" if "AP" in views else "CHEST (PA)"

    def frontal_images(self) -> list[MimicImage]:
        return [image for image in self.images if image.view in ("PA", "AP")]


def dicom_id_for(*keys: object) -> str:
    """A MIMIC-style dicom_id (five dash-separated 8-digit hex groups) derived from the keys."""
    digest = hashlib.sha256(repr(keys).encode()).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def _weighted(rng: np.random.Generator, choices: tuple) -> object:
    values, weights = zip(*choices)
    return values[int(rng.choice(len(values), p=np.asarray(weights) / sum(weights)))]


def _image_size(rng: np.random.Generator) -> tuple[int, int]:
    """Small, mostly portrait, never square (so a swapped width/height shows)."""
    width = int(rng.integers(112, 145))
    height = int(rng.integers(128, 161))
    return (width, height + 3) if width == height else (width, height)


def plan(seed: int) -> list[MimicStudy]:
    """Every study of the sample in file order: patients' studies in date order."""
    ids = rng_for(seed, "mimic", "ids")
    subject_ids = sorted(int(v) for v in 10_000_000 + ids.choice(10_000_000, size=SUBJECTS, replace=False))
    layout_rng = rng_for(seed, "mimic", "studies per subject")
    study_counts = [int(_weighted(layout_rng, STUDIES_PER_SUBJECT)) for _ in subject_ids]
    study_ids = [int(v) for v in 50_000_000 + ids.choice(10_000_000, size=sum(study_counts), replace=False)]
    order = rng_for(seed, "mimic", "splits").permutation(SUBJECTS)
    split_of: dict[int, str] = {}
    start = 0
    for split, share in SPLIT_SHARES:
        count = round(share * SUBJECTS) if split != SPLIT_SHARES[-1][0] else SUBJECTS - start
        for index in order[start : start + count]:
            split_of[int(index)] = split
        start += count

    studies = []
    next_study = iter(study_ids)
    for index, subject in enumerate(subject_ids):
        rng = rng_for(seed, "mimic", "subject", subject)
        day = date(2110, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 90)))
        sex, age = ("M" if rng.random() < 0.5 else "F"), int(rng.integers(20, 90))
        for number in range(1, study_counts[index] + 1):
            study_id = next(next_study)
            study_rng = rng_for(seed, "mimic", "study", study_id)
            views = _weighted(study_rng, LAYOUTS)
            case = sample_case(study_rng, lateral_fraction=0.0, prior_fraction=0.0 if number == 1 else 0.7)
            case = dataclasses.replace(case, view=views[0], sex=sex, age=age)
            images = []
            for position, view in enumerate(views):
                width, height = _image_size(study_rng)
                images.append(
                    MimicImage(dicom_id_for(seed, "mimic", study_id, position), view, width, height)
                )
            seconds = int(study_rng.integers(0, 86_400))
            hhmmss = (
                seconds // 3600 * 10_000 + seconds // 60 % 60 * 100 + seconds % 60
            )  # a float in the release
            time = f"{hhmmss}.{int(study_rng.integers(0, 1000)):03d}"
            studies.append(
                MimicStudy(
                    str(subject), str(study_id), split_of[index], number, day, time, case, tuple(images)
                )
            )
            day += timedelta(days=int(rng.integers(1, 400)))
    return studies


# --- Writing helpers ----------------------------------------------------------------------------------
def _csv_bytes(header: Iterable[str], rows: Iterable[Iterable[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _write_gzip(path: Path, payload: bytes, level: int = 9) -> None:
    """gzip without a file name or timestamp in its header, so equal payloads give equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=level) as packed,
    ):
        packed.write(payload)


def _write(path: Path, payload: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(payload, str):
        payload = payload.encode()
    path.write_bytes(payload)


def _jpeg(case: Case, image: MimicImage, seed: int) -> bytes:
    pixels = render_radiograph(
        dataclasses.replace(case, view=image.view),
        image.width,
        image.height,
        rng_for(seed, "mimic", "pixels", image.dicom_id),
    )
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(pixels)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _wrapped(text: str) -> list[str]:
    return [f" {line}" for line in textwrap.wrap(text, 77)]


def report_text(study: MimicStudy, seed: int) -> str:
    """A report laid out as MIMIC-CXR's: a centred title, upper-case section headers, lines wrapped with a
    leading space, blank lines holding one space, "___" where the de-identification removed something.
    Most have FINDINGS and IMPRESSION; some only IMPRESSION; a few no such header at all (the section
    parser then falls back on the last paragraph)."""
    rng = rng_for(seed, "mimic", "report", study.study_id)
    sections = report_sections(study.case, rng)
    style = rng.random()
    technique = {
        "CHEST (PA AND LAT)": "Chest PA and lateral",
        "CHEST (AP AND LAT)": "Chest AP and lateral",
        "CHEST (PORTABLE AP)": "Portable AP chest radiograph",
        "CHEST (PA)": "Single PA view of the chest",
    }[study.procedure]
    lines = ["                                 FINAL REPORT"]
    if style < 0.08:  # no FINDINGS/IMPRESSION headers: the text is the report's last paragraph
        lines += [
            f" {study.procedure.replace('(', '').replace(')', '')}, ___",
            " ",
            f" COMPARISON:  {sections.comparison}",
            " ",
            *_wrapped(sections.findings),
            " ",
        ]
        return "\n".join(lines) + "\n"
    lines += [
        f" EXAMINATION:  {study.procedure}",
        " ",
        *_wrapped(f"INDICATION:  {sections.indication}"),
        " ",
        f" TECHNIQUE:  {technique}",
        " ",
        f" COMPARISON:  {sections.comparison}",
        " ",
    ]
    if style < 0.2:  # impression only: it then carries every statement
        lines += [" IMPRESSION: ", " ", *_wrapped(sections.findings), " "]
    else:
        lines += [
            " FINDINGS: ",
            " ",
            *_wrapped(sections.findings),
            " ",
            " IMPRESSION: ",
            " ",
            *_wrapped(sections.impression),
            " ",
        ]
    return "\n".join(lines) + "\n"


# --- MIMIC-CXR ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _DirtImage:
    """An image that exists only in the dirty sample, in the host study's folder."""

    fault: str
    image: MimicImage
    metadata_view: str  # as written ("" for blank)
    metadata_subject: str  # as written ("" for blank)
    study_id: str
    rows_offset: int = 0  # added to the metadata's Rows, so it disagrees with the JPEG


def _dirt_host(studies: list[MimicStudy], split: str) -> MimicStudy:
    return next(s for s in studies if s.split == split and s.frontal_images())


def _dirt_images(studies: list[MimicStudy], seed: int) -> list[_DirtImage]:
    host = _dirt_host(studies, "train")
    orphan_study = str(int(max(s.study_id for s in studies)) + 1)

    def image(fault: str, view: str) -> MimicImage:
        width, height = _image_size(rng_for(seed, "mimic", "dirt size", fault))
        return MimicImage(dicom_id_for(seed, "mimic", "dirt", fault), view, width, height)

    subject, study = host.subject_id, host.study_id
    return [
        _DirtImage("unreadable_image", image("unreadable_image", "AP"), "AP", subject, study),
        _DirtImage("missing_image", image("missing_image", "AP"), "AP", subject, study),
        _DirtImage("missing_view", image("missing_view", "PA"), "", subject, study),
        _DirtImage("missing_subject", image("missing_subject", "PA"), "PA", "", study),
        _DirtImage("missing_split", image("missing_split", "PA"), "PA", subject, orphan_study),
        _DirtImage(
            "image_size_mismatch", image("image_size_mismatch", "AP"), "AP", subject, study, rows_offset=37
        ),
    ]


def _unreadable_image(studies: list[MimicStudy], seed: int) -> MimicImage:
    return next(d.image for d in _dirt_images(studies, seed) if d.fault == "unreadable_image")


def _metadata_row(
    study: MimicStudy,
    image: MimicImage,
    subject_id: str | None = None,
    study_id: str | None = None,
    view: str | None = None,
    rows: int | None = None,
) -> list[object]:
    view = image.view if view is None else view
    orientation = "Recumbent" if view == "AP" and study.procedure == "CHEST (PORTABLE AP)" else "Erect"
    return [
        image.dicom_id,
        study.subject_id if subject_id is None else subject_id,
        study.study_id if study_id is None else study_id,
        study.procedure,
        view,
        image.height if rows is None else rows,
        image.width,
        study.study_date.strftime("%Y%m%d"),
        study.study_time,
        study.procedure,
        VIEW_MEANINGS.get(view, ""),
        orientation if view else "",
    ]


def _write_mimic(root: Path, studies: list[MimicStudy], seed: int, dirty: bool) -> dict[str, int]:
    metadata, splits, labels = [], [], []
    for study in studies:
        for image in study.images:
            metadata.append(_metadata_row(study, image))
            splits.append([image.dicom_id, study.study_id, study.subject_id, study.split])
            _write(root / study.image_path(image), _jpeg(study.case, image, seed))
        values = chexpert_values(study.case, CHEXPERT_LABELS)
        labels.append([study.subject_id, study.study_id, *(values[name] for name in CHEXPERT_LABELS)])
        _write(root / study.report_path, report_text(study, seed))

    if dirty:
        host = _dirt_host(studies, "train")
        metadata.append(list(metadata[0]))  # duplicate_row
        for dirt in _dirt_images(studies, seed):
            metadata.append(
                _metadata_row(
                    host,
                    dirt.image,
                    subject_id=dirt.metadata_subject,
                    study_id=dirt.study_id,
                    view=dirt.metadata_view,
                    rows=dirt.image.height + dirt.rows_offset,
                )
            )
            if dirt.fault != "missing_split":
                splits.append([dirt.image.dicom_id, dirt.study_id, host.subject_id, host.split])
            path = (
                root
                / f"files/p{host.subject_id[:2]}/p{host.subject_id}/s{dirt.study_id}/{dirt.image.dicom_id}.jpg"
            )
            jpeg = _jpeg(host.case, dirt.image, seed)
            if dirt.fault == "unreadable_image":
                _write(path, jpeg[: len(jpeg) // 2])
            elif dirt.fault != "missing_image":
                _write(path, jpeg)
        splits.append(list(splits[0]))  # duplicate_split_row
        edema = CHEXPERT_COLUMNS.index("Edema")
        for row in labels:
            if row[1] == _dirt_host(studies, "test").study_id:
                row[edema] = "2.0"  # unknown_label_value
        labels.append(list(labels[0]))  # duplicate_label_row
        _write(
            root / _dirt_host(studies, "validate").report_path,
            "                                 FINAL REPORT\n \n",
        )

    _write_gzip(root / METADATA_FILE, _csv_bytes(METADATA_COLUMNS, metadata))
    _write_gzip(root / SPLIT_FILE, _csv_bytes(SPLIT_COLUMNS, splits))
    _write_gzip(root / CHEXPERT_FILE, _csv_bytes(CHEXPERT_COLUMNS, labels))
    return {
        "images": len(metadata),
        "studies": len(labels),
        "subjects": len({s.subject_id for s in studies}),
        "reports": len(studies),
    }


# --- Chest ImaGenome ----------------------------------------------------------------------------------
def _imagenome_splits(studies: list[MimicStudy], seed: int) -> dict[str, str]:
    """Chest ImaGenome's own patient split (train / valid / test), independent of MIMIC-CXR's."""
    subjects = sorted({s.subject_id for s in studies})
    rng = rng_for(seed, "imagenome", "subjects")
    chosen = [
        subjects[int(i)]
        for i in sorted(
            rng.choice(len(subjects), size=round(len(subjects) * IMAGENOME_SUBJECT_FRACTION), replace=False)
        )
    ]
    order = rng.permutation(len(chosen))
    split_of, start = {}, 0
    for split, share in IMAGENOME_SPLIT_SHARES:
        count = round(share * len(chosen)) if split != "test" else len(chosen) - start
        for index in order[start : start + count]:
            split_of[chosen[int(index)]] = split
        start += count
    return split_of


def _scale_224(width: int, height: int) -> tuple[float, float, float]:
    """Chest ImaGenome's x1..y2 are on the image resized to 224 px (longest side) and padded square."""
    ratio = 224 / max(width, height)
    return ratio, (224 - width * ratio) / 2, (224 - height * ratio) / 2


def scene_graph(study: MimicStudy, image: MimicImage, seed: int) -> dict:
    """The parts of a silver scene graph a reader touches, shaped as in the release."""
    rng = rng_for(seed, "imagenome", "scene graph", image.dicom_id)
    regions = list(REGIONS)
    if rng.random() < 0.15:  # some real scene graphs miss a few regions
        for index in sorted(rng.choice(len(regions), size=2, replace=False), reverse=True):
            regions.pop(int(index))
    overhang = rng.random() < 0.2  # some real boxes overhang the image edge; readers clip them
    ratio, pad_x, pad_y = _scale_224(image.width, image.height)
    objects = []
    for name in regions:
        x1, y1, x2, y2 = region_box(name, rng)
        box = [
            round(x1 * image.width),
            round(y1 * image.height),
            round(x2 * image.width),
            round(y2 * image.height),
        ]
        if overhang and name == "abdomen":
            box[3] = round(image.height * 1.04)
        scaled = [
            round(box[0] * ratio + pad_x),
            round(box[1] * ratio + pad_y),
            round(box[2] * ratio + pad_x),
            round(box[3] * ratio + pad_y),
        ]
        objects.append(
            {
                "object_id": f"{image.dicom_id}_{name}",
                "x1": scaled[0],
                "y1": scaled[1],
                "x2": scaled[2],
                "y2": scaled[3],
                "width": scaled[2] - scaled[0],
                "height": scaled[3] - scaled[1],
                "bbox_name": name,
                "synsets": [],
                "name": name.capitalize(),
                "original_x1": box[0],
                "original_y1": box[1],
                "original_x2": box[2],
                "original_y2": box[3],
                "original_width": box[2] - box[0],
                "original_height": box[3] - box[1],
            }
        )
    attributes = [
        {
            "bbox_name": placed.region,
            "synsets": [],
            "name": placed.region.capitalize(),
            "attributes": [
                [
                    f"anatomicalfinding|{'yes' if not placed.uncertain else 'maybe'}|"
                    f"{placed.finding.key.replace('_', ' ')}"
                ]
            ],
            "attributes_ids": [[placed.finding.key]],
            "phrases": [placed.finding.sentences[0].format(side=placed.side)],
            "phrase_IDs": [f"{study.study_id}|{index}"],
            "sections": ["finalreport"],
            "comparison_cues": [[]],
            "temporal_cues": [[]],
            "severity_cues": [[]],
            "texture_cues": [[]],
            "object_id": f"{image.dicom_id}_{placed.region}",
        }
        for index, placed in enumerate(study.case.findings)
    ]
    decade = study.case.age // 10 * 10
    return {
        "image_id": image.dicom_id,
        "viewpoint": image.view,
        "patient_id": int(study.subject_id),
        "study_id": int(study.study_id),
        "gender": study.case.sex,
        "age_decile": f"{decade}-{decade + 10}",
        "reason_for_exam": "___ with shortness of breath",
        "StudyOrder": study.order,
        "StudyDateTime": f"{study.study_date.isoformat()} 00:00:00 UTC",
        "objects": objects,
        "attributes": attributes,
        "relationships": [],
    }


def _imagenome_row(study: MimicStudy, image: MimicImage) -> list[object]:
    """A split-file row; its path names MIMIC-CXR's DICOM, as the release does."""
    return [
        study.subject_id,
        study.study_id,
        image.dicom_id,
        f"{study.folder}/{image.dicom_id}.dcm",
        image.view,
    ]


def _imagenome_box_fault_image(studies: list[MimicStudy], seed: int) -> MimicImage:
    """The first Chest ImaGenome train image whose scene graph has the two regions the dirt breaks."""
    split_of = _imagenome_splits(studies, seed)
    return next(
        image
        for study in studies
        if split_of.get(study.subject_id) == "train"
        for image in study.frontal_images()
        if {"trachea", "aortic arch"} <= {o["bbox_name"] for o in scene_graph(study, image, seed)["objects"]}
    )


def _write_imagenome(root: Path, studies: list[MimicStudy], seed: int, dirty: bool) -> dict[str, int]:
    split_of = _imagenome_splits(studies, seed)
    rows: dict[str, list[list[object]]] = {split: [] for split in IMAGENOME_SPLIT_FILES}
    graphs: dict[str, dict] = {}
    for study in studies:
        split = split_of.get(study.subject_id)
        if split is None:
            continue
        for image in study.frontal_images():
            rows[split].append(_imagenome_row(study, image))
            graphs[image.dicom_id] = scene_graph(study, image, seed)

    malformed: set[str] = set()
    if dirty:
        target = _imagenome_box_fault_image(studies, seed)
        for obj in graphs[target.dicom_id]["objects"]:
            if obj["bbox_name"] == "trachea":  # box_outside_image
                obj["original_x1"], obj["original_x2"] = target.width + 10, target.width + 40
            if obj["bbox_name"] == "aortic arch":  # inverted_box
                obj["original_x1"], obj["original_x2"] = obj["original_x2"], obj["original_x1"]
        outsiders = [s for s in studies if s.subject_id not in split_of and s.frontal_images()]
        for study, fault in ((outsiders[0], "missing_scene_graph"), (outsiders[1], "malformed_json")):
            image = study.frontal_images()[0]
            rows["train"].append(_imagenome_row(study, image))
            if fault == "malformed_json":
                graphs[image.dicom_id] = scene_graph(study, image, seed)
                malformed.add(image.dicom_id)
        host, image = _dirt_host(studies, "train"), _unreadable_image(studies, seed)
        rows["train"].append(_imagenome_row(host, image))
        graphs[image.dicom_id] = scene_graph(host, image, seed)  # not_in_mimic_images
        rows["train"].append(list(rows["train"][0]))  # duplicate_row

    for split, file in IMAGENOME_SPLIT_FILES.items():
        _write(root / file, _csv_bytes(IMAGENOME_SPLIT_COLUMNS, ([i, *r] for i, r in enumerate(rows[split]))))
    for dicom_id, graph in graphs.items():
        text = json.dumps(graph)
        _write(
            root / "silver_dataset" / "scene_graph" / f"{dicom_id}_SceneGraph.json",
            text[: len(text) // 2] if dicom_id in malformed else text,
        )
    return {"images": sum(len(r) for r in rows.values()), "scene_graphs": len(graphs)}


# --- MS-CXR -------------------------------------------------------------------------------------------
def _ms_cxr_rows(studies: list[MimicStudy], seed: int) -> list[list[object]]:
    """Boxes of phrases on frontal images of every MIMIC-CXR split; some phrases carry two boxes."""
    rows = []
    for split, wanted in MS_CXR_IMAGES_PER_SPLIT.items():
        eligible = [
            (study, image)
            for study in studies
            if study.split == split
            for image in study.frontal_images()[:1]
            if any(p.finding.key in MS_CXR_PHRASES and not p.uncertain for p in study.case.findings)
        ]
        rng = rng_for(seed, "ms-cxr", split)
        picks = sorted(rng.choice(len(eligible), size=min(wanted, len(eligible)), replace=False))
        for index in picks:
            study, image = eligible[int(index)]
            phrase_rng = rng_for(seed, "ms-cxr", "phrases", image.dicom_id)
            for placed in [
                p for p in study.case.findings if p.finding.key in MS_CXR_PHRASES and not p.uncertain
            ][:2]:
                category, phrases = MS_CXR_PHRASES[placed.finding.key]
                text = phrases[int(phrase_rng.integers(len(phrases)))].format(side=placed.side)
                x1, y1, x2, y2 = placed.box
                x, y = round(x1 * image.width), round(y1 * image.height)
                w, h = round((x2 - x1) * image.width), round((y2 - y1) * image.height)
                parts = [(x, y, w, h)]
                if phrase_rng.random() < 0.25:  # one opacity boxed as two overlapping parts
                    upper = round(h * 0.55)
                    parts = [(x, y, w, upper), (x, y + h - upper, w, upper)]
                for px, py, pw, ph in parts:
                    rows.append(
                        [
                            image.dicom_id,
                            category,
                            text,
                            study.image_path(image),
                            px,
                            py,
                            pw,
                            ph,
                            image.width,
                            image.height,
                        ]
                    )
    return rows


def _write_ms_cxr(root: Path, studies: list[MimicStudy], seed: int, dirty: bool) -> dict[str, int]:
    rows = _ms_cxr_rows(studies, seed)
    if dirty:
        base = rows[0]
        width = base[8]
        rows.append([*base[:4], width + 5, base[5], 20, 20, *base[8:]])  # box_outside_image
        rows.append([*base[:4], base[4] + 20, base[5], -20, base[7], *base[8:]])  # inverted_box
        rows.append(
            [*base[:4], base[4] + 2, base[5] + 2, base[6], base[7], "", base[9]]
        )  # missing_image_width
        rows.append(list(base))  # duplicate_row
        host, image = _dirt_host(studies, "train"), _unreadable_image(studies, seed)
        rows.append(
            [
                image.dicom_id,
                "Pleural Effusion",
                "small right pleural effusion",
                host.image_path(image),
                10,
                60,
                20,
                20,
                image.width,
                image.height,
            ]
        )  # not_in_mimic_images
    _write(root / MS_CXR_FILE, _csv_bytes(MS_CXR_COLUMNS, rows))
    return {
        "rows": len(rows),
        "images": len({r[0] for r in rows}),
        "phrases": len({(r[0], r[2]) for r in rows}),
    }


# --- Entry points -------------------------------------------------------------------------------------
def write(out_root: Path, seed: int, variant: Variant) -> dict[str, dict[str, int]]:
    studies = plan(seed)
    dirty = variant is Variant.DIRTY
    return {
        MIMIC_CXR.key: _write_mimic(MIMIC_CXR.root(out_root), studies, seed, dirty),
        CHEST_IMAGENOME.key: _write_imagenome(CHEST_IMAGENOME.root(out_root), studies, seed, dirty),
        MS_CXR.key: _write_ms_cxr(MS_CXR.root(out_root), studies, seed, dirty),
    }


# Real proportions (MIMIC-CXR-JPG 2.0.0): 65,379 patients, 227,835 studies, 377,110 images; MS-CXR 1,162
# boxes; Chest ImaGenome covers the frontal images of about 70 % of the patients.
SCALE_SUBJECTS_PER_STUDY = 65_379 / 227_835
SCALE_MS_CXR_BOXES_PER_STUDY = 1_162 / 227_835
SCALE_SPLIT_SHARES = (("train", 0.978), ("validate", 0.008), ("test", 0.014))
SCALE_LABEL_VALUES = ((None, 0.72), ("1.0", 0.12), ("0.0", 0.12), ("-1.0", 0.04))  # None: written blank


def _hex_ids(rng: np.random.Generator, count: int) -> pl.Series:
    """``count`` MIMIC-style dicom_ids, built on byte arrays (a Python loop takes seconds at paper scale)."""
    digits = np.frombuffer(rng.bytes(count * 20).hex().encode(), dtype=np.uint8).reshape(count, 40)
    dash = np.full((count, 1), ord("-"), dtype=np.uint8)
    parts = [
        digits[:, i : i + 8] if k % 2 == 0 else dash
        for k, i in enumerate(np.repeat(np.arange(0, 40, 8), 2)[:-1])
    ]
    return pl.Series(np.ascontiguousarray(np.concatenate(parts, axis=1)).view("S44").ravel()).cast(pl.String)


def _draw(rng: np.random.Generator, choices: tuple, count: int) -> pl.Series:
    values, weights = zip(*choices)
    return pl.Series(values).gather(rng.choice(len(values), size=count, p=np.asarray(weights) / sum(weights)))


def _study_times(rng: np.random.Generator, count: int) -> pl.Series:
    """HHMMSS.fff as the release writes it (a float, so no leading zero)."""
    seconds = rng.integers(0, 86_400, size=count)
    hhmmss = seconds // 3600 * 10_000 + seconds // 60 % 60 * 100 + seconds % 60
    return pl.Series("StudyTime", np.round(hhmmss + rng.integers(0, 1000, size=count) / 1000, 3))


def _gzip_frame(path: Path, frame: pl.DataFrame) -> None:
    _write_gzip(path, frame.write_csv().encode(), level=1)


def write_scale(out_root: Path, seed: int, studies: int) -> dict[str, dict[str, int]]:
    """The three families' tables at about ``studies`` MIMIC-CXR studies, without pixels, report files or
    scene-graph files (the release keeps those apart); vectorised, seconds at paper scale."""
    rng = rng_for(seed, "mimic", "scale")
    n_subjects = max(3, round(studies * SCALE_SUBJECTS_PER_STUDY))
    subjects = pl.DataFrame(
        {
            "subject_id": np.sort(10_000_000 + rng.choice(10_000_000, size=n_subjects, replace=False)),
            "split": _draw(rng, SCALE_SPLIT_SHARES, n_subjects),
            "imagenome": _draw(
                rng, (*IMAGENOME_SPLIT_SHARES, ("", 1 - IMAGENOME_SUBJECT_FRACTION)), n_subjects
            ),
        }
    ).with_columns(pl.col("subject_id").cast(pl.String))
    layout_views = [list(views) for views, _ in LAYOUTS]
    study_frame = (
        pl.DataFrame(
            {
                "subject": np.sort(
                    np.concatenate([np.arange(n_subjects), rng.integers(0, n_subjects, studies - n_subjects)])
                ),
                "study_id": 50_000_000 + rng.choice(10_000_000, size=studies, replace=False),
                "layout": rng.choice(len(LAYOUTS), size=studies, p=np.asarray([w for _, w in LAYOUTS])),
                "day": rng.integers(0, 365 * 90, size=studies),
            }
        )
        .with_columns(
            pl.col("study_id").cast(pl.String),
            pl.col("layout")
            .replace_strict(dict(enumerate(layout_views)), return_dtype=pl.List(pl.String))
            .alias("views"),
            (pl.date(2110, 1, 1) + pl.duration(days="day")).dt.strftime("%Y%m%d").alias("StudyDate"),
        )
        .join(subjects.with_row_index("subject"), on="subject", how="left", maintain_order="left")
    )
    images = study_frame.explode("views").rename({"views": "ViewPosition"})
    n_images = images.height
    metadata = images.select(
        _hex_ids(rng, n_images).alias("dicom_id"),
        "subject_id",
        "study_id",
        pl.when(pl.len().over("study_id") > 1)
        .then(pl.lit("CHEST (PA AND LAT)"))
        .otherwise(pl.lit("CHEST (PORTABLE AP)"))
        .alias("PerformedProcedureStepDescription"),
        "ViewPosition",
        pl.Series("Rows", rng.integers(2000, 3057, size=n_images)),
        pl.Series("Columns", rng.integers(1700, 3057, size=n_images)),
        "StudyDate",
        _study_times(rng, n_images),
    ).with_columns(
        pl.col("PerformedProcedureStepDescription").alias("ProcedureCodeSequence_CodeMeaning"),
        pl.col("ViewPosition")
        .replace_strict(VIEW_MEANINGS, default="")
        .alias("ViewCodeSequence_CodeMeaning"),
        pl.lit("Erect").alias("PatientOrientationCodeSequence_CodeMeaning"),
    )
    mimic_root = MIMIC_CXR.root(out_root)
    mimic_root.mkdir(parents=True, exist_ok=True)
    _gzip_frame(mimic_root / METADATA_FILE, metadata)
    _gzip_frame(
        mimic_root / SPLIT_FILE, metadata.select("dicom_id", "study_id", "subject_id", images["split"])
    )
    _gzip_frame(
        mimic_root / CHEXPERT_FILE,
        study_frame.select(
            "subject_id",
            "study_id",
            *(_draw(rng, SCALE_LABEL_VALUES, studies).alias(name) for name in CHEXPERT_LABELS),
        ),
    )

    frontal = metadata.with_columns(
        images["imagenome"],
        path=pl.format(
            "files/p{}/p{}/s{}/{}", pl.col("subject_id").str.slice(0, 2), "subject_id", "study_id", "dicom_id"
        ),
    ).filter(pl.col("ViewPosition").is_in(["PA", "AP"]))
    imagenome = frontal.filter(pl.col("imagenome") != "")
    imagenome_root = CHEST_IMAGENOME.root(out_root)
    for name, file in IMAGENOME_SPLIT_FILES.items():
        (imagenome_root / file).parent.mkdir(parents=True, exist_ok=True)
        imagenome.filter(pl.col("imagenome") == name).select(
            "subject_id",
            "study_id",
            "dicom_id",
            pl.col("path") + ".dcm",
            "ViewPosition",
        ).with_row_index("").write_csv(
            imagenome_root / file, quote_style="never"
        )  # header starts ",subject_id"

    boxes = frontal.sample(
        n=min(frontal.height, max(1, round(studies * SCALE_MS_CXR_BOXES_PER_STUDY))),
        seed=int(rng.integers(2**31)),
    )
    ms_cxr = boxes.select(
        "dicom_id",
        pl.lit("Pleural Effusion").alias("category_name"),
        pl.lit("small right pleural effusion").alias("label_text"),
        pl.col("path") + ".jpg",
        (pl.col("Columns") * 0.1).round().cast(pl.Int64).alias("x"),
        (pl.col("Rows") * 0.5).round().cast(pl.Int64).alias("y"),
        (pl.col("Columns") * 0.3).round().cast(pl.Int64).alias("w"),
        (pl.col("Rows") * 0.3).round().cast(pl.Int64).alias("h"),
        pl.col("Columns").alias("image_width"),
        pl.col("Rows").alias("image_height"),
    )
    MS_CXR.root(out_root).mkdir(parents=True, exist_ok=True)
    ms_cxr.write_csv(MS_CXR.root(out_root) / MS_CXR_FILE)
    return {
        MIMIC_CXR.key: {"images": n_images, "studies": studies, "subjects": n_subjects, "reports": 0},
        CHEST_IMAGENOME.key: {"images": imagenome.height, "scene_graphs": 0},
        MS_CXR.key: {
            "rows": ms_cxr.height,
            "images": ms_cxr["dicom_id"].n_unique(),
            "phrases": ms_cxr.height,
        },
    }


@dataclass(frozen=True)
class Fault:
    file: str  # relative to the dataset root
    row: int  # numbered as in the quarantine table
    reason: str | None  # the quarantine reason a reader must give; None where it can repair the row


def faults(seed: int) -> dict[str, dict[str, Fault]]:
    """Where each fault of ``DIRT`` lies in the dirty sample: dataset -> fault -> Fault."""
    studies = plan(seed)
    images = sum(len(s.images) for s in studies)
    metadata_reason = {"missing_view": "missing_value", "missing_subject": "missing_value"}
    metadata = {
        dirt.fault: Fault(METADATA_FILE, images + 2 + i, metadata_reason.get(dirt.fault, dirt.fault))
        for i, dirt in enumerate(_dirt_images(studies, seed))
    }
    label_row = {s.study_id: i + 1 for i, s in enumerate(studies)}
    split_of = _imagenome_splits(studies, seed)
    imagenome_train = sum(len(s.frontal_images()) for s in studies if split_of.get(s.subject_id) == "train")
    target = _imagenome_box_fault_image(studies, seed)
    target_study = next(s for s in studies if target in s.images)
    graph = f"silver_dataset/scene_graph/{target.dicom_id}_SceneGraph.json"
    region_row = {
        o["bbox_name"]: n for n, o in enumerate(scene_graph(target_study, target, seed)["objects"], start=1)
    }
    train_csv = IMAGENOME_SPLIT_FILES["train"]
    ms_rows = len(_ms_cxr_rows(studies, seed))
    return {
        MIMIC_CXR.key: {
            "duplicate_row": Fault(METADATA_FILE, images + 1, "duplicate_row"),
            **metadata,
            # the five appended images with a split row come first, then the repeated first row
            "duplicate_split_row": Fault(SPLIT_FILE, images + 6, "duplicate_row"),
            "unknown_label_value": Fault(
                CHEXPERT_FILE, label_row[_dirt_host(studies, "test").study_id], "unknown_label_value"
            ),
            "duplicate_label_row": Fault(CHEXPERT_FILE, len(studies) + 1, "duplicate_row"),
            "empty_report": Fault(_dirt_host(studies, "validate").report_path, 1, "empty_report"),
        },
        CHEST_IMAGENOME.key: {
            "box_outside_image": Fault(graph, region_row["trachea"], "box_outside_image"),
            "inverted_box": Fault(graph, region_row["aortic arch"], "inverted_box"),
            "missing_scene_graph": Fault(train_csv, imagenome_train + 1, "missing_scene_graph"),
            "malformed_json": Fault(train_csv, imagenome_train + 2, "malformed_json"),
            "not_in_mimic_images": Fault(train_csv, imagenome_train + 3, "not_in_mimic_images"),
            "duplicate_row": Fault(train_csv, imagenome_train + 4, "duplicate_row"),
        },
        MS_CXR.key: {
            "box_outside_image": Fault(MS_CXR_FILE, ms_rows + 1, "box_outside_image"),
            "inverted_box": Fault(MS_CXR_FILE, ms_rows + 2, "inverted_box"),
            "missing_image_width": Fault(MS_CXR_FILE, ms_rows + 3, None),
            "duplicate_row": Fault(MS_CXR_FILE, ms_rows + 4, "duplicate_row"),
            "not_in_mimic_images": Fault(MS_CXR_FILE, ms_rows + 5, "not_in_mimic_images"),
        },
    }
