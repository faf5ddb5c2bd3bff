"""Synthetic MIMIC-CXR-JPG 2.0.0 (+ MIMIC-CXR 2.0.0 reports), as released.

Written under ``mimic-cxr/``::

    mimic-cxr-2.0.0-metadata.csv.gz   dicom_id,subject_id,study_id,PerformedProcedureStepDescription,
                                      ViewPosition,Rows,Columns,StudyDate,StudyTime,...
    mimic-cxr-2.0.0-split.csv.gz      dicom_id,study_id,subject_id,split   (split by patient)
    mimic-cxr-2.0.0-chexpert.csv.gz   subject_id,study_id,<14 labels>      (1.0 / 0.0 / -1.0 / blank)
    files/p10/p10000032/s50414267/<dicom_id>.jpg   8-bit grayscale JPEG, frontal and lateral views
    files/p10/p10000032/s50414267.txt               the study's free-text report

``plan`` is the sample's patients, studies and images; Chest ImaGenome and MS-CXR annotate them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import textwrap
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from radvlm_pipeline.sample_data.common import (
    Case,
    Fault,
    chexpert_values,
    render_radiograph,
    report_sections,
    rng_for,
    sample_case,
    to_uint8,
)
from radvlm_pipeline.sample_data.files import (
    FileJobs,
    csv_bytes,
    gzip_bytes,
    write_file,
    write_gzip,
    write_pooled,
    write_table,
)
from radvlm_pipeline.schema import CHEXPERT_LABELS, VIEWS_FRONTAL

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

VIEW_MEANINGS = {
    "PA": "postero-anterior",
    "AP": "antero-posterior",
    "LATERAL": "lateral",
    "LL": "left lateral",
}

# The faults Variant.DIRTY injects. Rows appended to a file keep every clean row where it was, so the
# dirty sample is the clean one plus these; ``faults`` names the exact file and row of each.
DIRT = {
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
}


# --- The plan: patients, studies, images --------------------------------------------------------------
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


def study_case(rng: np.random.Generator, order: int, view: str, sex: str, age: int) -> Case:
    """The findings of a patient's ``order``-th study, shown on its first view; only a later study's
    report can compare with a prior one."""
    case = sample_case(rng, lateral_fraction=0.0, prior_fraction=0.0 if order == 1 else 0.7)
    return dataclasses.replace(case, view=view, sex=sex, age=age)


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
            case = study_case(study_rng, number, views[0], sex, age)
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


# --- Pixels and reports -------------------------------------------------------------------------------
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


# --- The release files, clean or dirty ----------------------------------------------------------------
@dataclass(frozen=True)
class _DirtImage:
    """An image that exists only in the dirty sample, in the host study's folder."""

    fault: str
    image: MimicImage
    metadata_view: str  # as written ("" for blank)
    metadata_subject: str  # as written ("" for blank)
    study_id: str
    rows_offset: int = 0  # added to the metadata's Rows, so it disagrees with the JPEG


def dirt_host(studies: list[MimicStudy], split: str) -> MimicStudy:
    return next(s for s in studies if s.split == split and s.frontal_images())


def _dirt_images(studies: list[MimicStudy], seed: int) -> list[_DirtImage]:
    host = dirt_host(studies, "train")
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


def unreadable_image(studies: list[MimicStudy], seed: int) -> MimicImage:
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


def write(root: Path, studies: list[MimicStudy], seed: int, dirty: bool) -> dict[str, int]:
    metadata, splits, labels = [], [], []
    for study in studies:
        for image in study.images:
            metadata.append(_metadata_row(study, image))
            splits.append([image.dicom_id, study.study_id, study.subject_id, study.split])
            write_file(root / study.image_path(image), _jpeg(study.case, image, seed))
        values = chexpert_values(study.case, CHEXPERT_LABELS)
        labels.append([study.subject_id, study.study_id, *(values[name] for name in CHEXPERT_LABELS)])
        write_file(root / study.report_path, report_text(study, seed))

    if dirty:
        host = dirt_host(studies, "train")
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
                write_file(path, jpeg[: len(jpeg) // 2])
            elif dirt.fault != "missing_image":
                write_file(path, jpeg)
        splits.append(list(splits[0]))  # duplicate_split_row
        edema = CHEXPERT_COLUMNS.index("Edema")
        for row in labels:
            if row[1] == dirt_host(studies, "test").study_id:
                row[edema] = "2.0"  # unknown_label_value
        labels.append(list(labels[0]))  # duplicate_label_row
        write_file(
            root / dirt_host(studies, "validate").report_path,
            "                                 FINAL REPORT\n \n",
        )

    write_gzip(root / METADATA_FILE, csv_bytes(METADATA_COLUMNS, metadata))
    write_gzip(root / SPLIT_FILE, csv_bytes(SPLIT_COLUMNS, splits))
    write_gzip(root / CHEXPERT_FILE, csv_bytes(CHEXPERT_COLUMNS, labels))
    return {
        "images": len(metadata),
        "studies": len(labels),
        "subjects": len({s.subject_id for s in studies}),
        "reports": len(studies),
    }


def faults(studies: list[MimicStudy], seed: int) -> dict[str, Fault]:
    """Where each fault of ``DIRT`` lies in the dirty sample: fault -> Fault."""
    images = sum(len(s.images) for s in studies)
    metadata_reason = {"missing_view": "missing_value", "missing_subject": "missing_value"}
    metadata = {
        dirt.fault: Fault(METADATA_FILE, images + 2 + i, metadata_reason.get(dirt.fault, dirt.fault))
        for i, dirt in enumerate(_dirt_images(studies, seed))
    }
    label_row = {s.study_id: i + 1 for i, s in enumerate(studies)}
    return {
        "duplicate_row": Fault(METADATA_FILE, images + 1, "duplicate_row"),
        **metadata,
        # the five appended images with a split row come first, then the repeated first row
        "duplicate_split_row": Fault(SPLIT_FILE, images + 6, "duplicate_row"),
        "unknown_label_value": Fault(
            CHEXPERT_FILE, label_row[dirt_host(studies, "test").study_id], "unknown_label_value"
        ),
        "duplicate_label_row": Fault(CHEXPERT_FILE, len(studies) + 1, "duplicate_row"),
        "empty_report": Fault(dirt_host(studies, "validate").report_path, 1, "empty_report"),
    }


# --- Paper scale, metadata only -----------------------------------------------------------------------
# Real proportions (MIMIC-CXR-JPG 2.0.0): 65,379 patients, 227,835 studies, 377,110 images.
SCALE_SUBJECTS_PER_STUDY = 65_379 / 227_835
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
    write_table(path, gzip_bytes(frame.write_csv().encode(), level=1))


# Paper scale with files: every image is one of a few tiny JPEGs, drawn once per process, and the
# metadata gives each image its JPEG's size (the reader checks the two agree).
POOL = 16  # distinct JPEGs per view kind (frontal, lateral)


def pool_sizes(seed: int) -> list[tuple[int, int]]:
    return [_image_size(rng_for(seed, "mimic", "pool size", k)) for k in range(POOL)]


def jpeg_pool(seed: int) -> list[bytes]:
    """``POOL`` frontal JPEGs, then ``POOL`` lateral ones of the same sizes."""
    cases = [sample_case(rng_for(seed, "mimic", "pool case", k), lateral_fraction=0.0) for k in range(POOL)]
    return [
        _jpeg(case, MimicImage(f"pool-{k}", view or case.view, width, height), seed)
        for view in (None, "LATERAL")
        for k, (case, (width, height)) in enumerate(zip(cases, pool_sizes(seed), strict=True))
    ]


# A later release adds studies of new patients, numbered apart from the first release's so none collides.
FIRST_RELEASE_IDS = (10_000_000, 50_000_000)  # first subject_id, first study_id
LATER_RELEASE_IDS = (20_000_000, 60_000_000)


def write_scale(
    root: Path,
    rng: np.random.Generator,
    studies: int,
    imagenome_shares: tuple[tuple[str, float], ...],
    files: FileJobs | None = None,
    later: tuple[np.random.Generator, int] | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The three tables at about ``studies`` studies; vectorised, seconds at paper scale. With ``files``
    the JPEGs are queued there too (report files are the family's: ``mimic.write_scale``), otherwise
    there are none and the sizes are real ones. ``later`` = (generator, studies) appends a later
    release's studies of new patients, left out of Chest ImaGenome. Returns every image with ``path``
    (without extension), ``split``, ``order`` (the study's number for its patient), ``later_release``
    and each patient's
    Chest ImaGenome split drawn from ``imagenome_shares`` in ``imagenome``: it is drawn here, with the
    patients, so the draws keep one order."""
    seed = files.seed if files is not None else None
    labels, images = _scale_release(rng, studies, imagenome_shares, FIRST_RELEASE_IDS, seed)
    if later is not None:
        later_rng, later_studies = later
        later_labels, later_images = _scale_release(
            later_rng, later_studies, (("", 1.0),), LATER_RELEASE_IDS, seed
        )
        labels, images = pl.concat([labels, later_labels]), pl.concat([images, later_images])
        studies += later_studies
    _gzip_frame(root / METADATA_FILE, images.select(METADATA_COLUMNS))
    _gzip_frame(root / SPLIT_FILE, images.select("dicom_id", "study_id", "subject_id", "split"))
    _gzip_frame(root / CHEXPERT_FILE, labels)
    if files is not None:
        folder = root.relative_to(files.out_root)
        files.add(
            functools.partial(write_pooled, jpeg_pool),
            [(f"{folder}/{path}.jpg", pool) for path, pool in images.select("path", "pool").iter_rows()],
            "mimic_cxr images",
        )
    counts = {
        "images": images.height,
        "studies": studies,
        "subjects": images["subject_id"].n_unique(),
        "reports": studies if files is not None else 0,
    }
    return images, counts


def _scale_release(
    rng: np.random.Generator,
    studies: int,
    imagenome_shares: tuple[tuple[str, float], ...],
    first_ids: tuple[int, int],
    pool_seed: int | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(label rows, images) of one release's studies; with ``pool_seed`` each image is given one of the
    pool's tiny JPEGs (``pool``) and its size."""
    first_subject, first_study = first_ids
    n_subjects = max(3, round(studies * SCALE_SUBJECTS_PER_STUDY))
    subjects = pl.DataFrame(
        {
            "subject_id": np.sort(first_subject + rng.choice(10_000_000, size=n_subjects, replace=False)),
            "split": _draw(rng, SCALE_SPLIT_SHARES, n_subjects),
            "imagenome": _draw(rng, imagenome_shares, n_subjects),
        }
    ).with_columns(pl.col("subject_id").cast(pl.String))
    layout_views = [list(views) for views, _ in LAYOUTS]
    study_frame = (
        pl.DataFrame(
            {
                "subject": np.sort(
                    np.concatenate([np.arange(n_subjects), rng.integers(0, n_subjects, studies - n_subjects)])
                ),
                "study_id": first_study + rng.choice(10_000_000, size=studies, replace=False),
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
            pl.int_range(1, pl.len() + 1).over("subject").alias("order"),
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
        images["split"],
        images["imagenome"],
        images["order"],
        pl.lit(first_ids == LATER_RELEASE_IDS).alias("later_release"),
        path=pl.format(
            "files/p{}/p{}/s{}/{}", pl.col("subject_id").str.slice(0, 2), "subject_id", "study_id", "dicom_id"
        ),
    )
    if pool_seed is not None:  # the tiny JPEG each image gets, and its size
        variant = rng_for(pool_seed, "mimic", "pool variants", first_ids).integers(0, POOL, size=n_images)
        columns, rows = np.asarray(pool_sizes(pool_seed)).T
        metadata = metadata.with_columns(
            pl.Series("Rows", rows[variant]),
            pl.Series("Columns", columns[variant]),
            pl.Series("pool", variant + POOL * ~metadata["ViewPosition"].is_in(VIEWS_FRONTAL).to_numpy()),
        )
    labels = study_frame.select(
        "subject_id",
        "study_id",
        *(_draw(rng, SCALE_LABEL_VALUES, studies).alias(name) for name in CHEXPERT_LABELS),
    )
    return labels, metadata
