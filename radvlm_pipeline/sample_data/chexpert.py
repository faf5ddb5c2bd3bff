"""Synthetic CheXpert v1.0-small (with its CheXlocalize test labels) and CheXpert-Plus, as released.

Written under the data root::

    chexpert/
      CheXpert-v1.0-small/train.csv, valid.csv     Path,Sex,Age,Frontal/Lateral,AP/PA,<14 labels>
      CheXpert-v1.0-small/{train,valid}/patientNNNNN/studyN/viewN_{frontal,lateral}.jpg
      CheXpert/test_labels.csv                      Path,<14 labels>  (CheXlocalize release: 0/1 consensus)
      CheXpert/test/patientNNNNN/studyN/viewN_{frontal,lateral}.jpg
    chexpert-plus/
      df_chexpert_plus_240401.csv                   27 columns, one row per train/valid image
      PNG/{train,valid}/patientNNNNN/studyN/viewN_*.png   (path_to_image says .jpg, the file is .png)
      chexbert_labels/report_fixed.json             JSON lines keyed by path_to_image, 14 labels

CheXpert-Plus adds reports to CheXpert's own train and valid images, so both folders here come from the
same studies: same patients, splits, image names, findings. CheXpert labels come from the same case
as the report, so labels agree with the text. The valid and test sets carry radiologist labels in the
release (no blanks, no uncertain); they are written that way too.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from radvlm_pipeline.datasets import CHEXPERT, CHEXPERT_PLUS
from radvlm_pipeline.sample_data.common import (
    Case,
    Variant,
    chexpert_values,
    render_radiograph,
    report_sections,
    rng_for,
    sample_case,
    to_uint8,
)
from radvlm_pipeline.sample_data.files import FileJobs, write_pooled, write_table

RELEASE_FOLDER = "CheXpert-v1.0-small"
TEST_FOLDER = "CheXpert"  # the CheXlocalize release's folder holding the CheXpert test set
TEST_LABELS = f"{TEST_FOLDER}/test_labels.csv"
PLUS_CSV = "df_chexpert_plus_240401.csv"
PLUS_LABELS = "chexbert_labels/report_fixed.json"
PLUS_IMAGE_FOLDER = "PNG"

# Column order of the released CSVs.
CHEXPERT_LABEL_ORDER = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
CHEXPERT_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABEL_ORDER)
TEST_COLUMNS = ("Path", *CHEXPERT_LABEL_ORDER)
PLUS_REPORT_COLUMNS = (
    "report",
    "section_narrative",
    "section_clinical_history",
    "section_history",
    "section_comparison",
    "section_technique",
    "section_procedure_comments",
    "section_findings",
    "section_impression",
    "section_end_of_impression",
    "section_summary",
    "section_accession_number",
)
PLUS_COLUMNS = (
    "path_to_image",
    "path_to_dcm",
    "frontal_lateral",
    "ap_pa",
    "deid_patient_id",
    "patient_report_date_order",
    *PLUS_REPORT_COLUMNS,
    "age",
    "sex",
    "race",
    "ethnicity",
    "interpreter_needed",
    "insurance_type",
    "recent_bmi",
    "deceased",
    "split",
)

# (release split folder, first patient number, patients). Real numbering: train patient00001-64540,
# valid patient64541-64740, test patient64741 onwards.
SPLIT_PATIENTS = (("train", 1, 45), ("valid", 64541, 15), ("test", 64741, 30))
PLUS_TRAIN_PATIENTS = 30  # CheXpert-Plus here covers the first train patients and all of valid

# The faults Variant.DIRTY injects, each into a known image (image ids as the readers name them).
DIRT = {
    CHEXPERT.key: {
        "unreadable_image": "train/patient00002/study1/view1_frontal",  # JPEG truncated to half
        "missing_image": "train/patient00003/study1/view1_frontal",  # JPEG not written
        "unknown_label_value": "train/patient00004/study1/view1_frontal",  # Cardiomegaly=2.0, Edema=yes
        "duplicate_row": "train/patient00005/study1/view1_frontal",  # row repeated right after itself
        "missing_sex": "train/patient00006/study1/view1_frontal",  # Sex blank (kept, sex null)
        "missing_ap_pa": "train/patient00007/study1/view1_frontal",  # AP/PA blank (kept, view null)
        "empty_path": "train/patient00008/study1/view1_frontal",  # followed by a copy with Path blank
    },
    CHEXPERT_PLUS.key: {
        "empty_report": "train/patient00009/study1/view1_frontal",  # no findings, no impression
        "missing_image": "train/patient00010/study1/view1_frontal",  # PNG not written
        "duplicate_row": "train/patient00011/study1/view1_frontal",  # CSV row and label line repeated
        "unknown_label_value": "train/patient00012/study1/view1_frontal",  # label line Edema="yes"
        "malformed_json": "train/patient00013/study1/view1_frontal",  # truncated line after its line
        "unknown_image": "train/patient99999/study1/view1_frontal",  # label line for no CSV row
    },
}

SEXES = {"M": "Male", "F": "Female"}
RACES = ("White", "Asian", "Black", "Other", "Unknown")
ETHNICITIES = ("Non-Hispanic/Non-Latino", "Hispanic/Latino", "Unknown")
INSURANCE = ("Private Insurance", "Medicare", "Medicaid", "Unknown")
SIGN_OFF = (
    "I have personally reviewed the images for this examination and agreed with the report transcribed above."
)
ANONYMISED = (
    "This report has been anonymized. All dates are offset from the actual dates by a fixed interval "
    "associated with the patient."
)


@dataclass(frozen=True)
class Study:
    split: str  # release folder: train, valid or test
    patient: str  # "patient00001"
    number: int
    case: Case  # the frontal view's case; a lateral shares its findings
    has_lateral: bool

    @property
    def folder(self) -> str:
        return f"{self.split}/{self.patient}/study{self.number}"

    def views(self) -> list[tuple[str, Case]]:
        """(image id, case) of each image of the study, frontal first."""
        views = [(f"{self.folder}/view1_frontal", self.case)]
        if self.has_lateral:
            views.append((f"{self.folder}/view2_lateral", dataclasses.replace(self.case, view="LATERAL")))
        return views


def sample_studies(seed: int) -> list[Study]:
    studies = []
    for split, first, count in SPLIT_PATIENTS:
        for number in range(first, first + count):
            patient_rng = rng_for(seed, "chexpert", "patient", number)
            sex = "M" if patient_rng.random() < 0.5 else "F"
            age = int(patient_rng.integers(20, 85))
            study_count = int(patient_rng.integers(1, 3)) if split == "train" else 1
            for study_number in range(1, study_count + 1):
                rng = rng_for(seed, "chexpert", "study", number, study_number)
                # Valid and test labels are radiologists' reads in the release: never uncertain.
                case = sample_case(
                    rng, lateral_fraction=0.0, uncertain_fraction=0.15 if split == "train" else 0.0
                )
                case.sex, case.age = sex, age + study_number - 1
                studies.append(
                    Study(split, f"patient{number:05d}", study_number, case, bool(rng.random() < 0.4))
                )
    return studies


def write(out_root: Path, seed: int, variant: Variant) -> dict[str, dict[str, int]]:
    studies = sample_studies(seed)
    dirty = variant is Variant.DIRTY
    return {
        CHEXPERT.key: _write_chexpert(CHEXPERT.root(out_root), studies, seed, dirty),
        CHEXPERT_PLUS.key: _write_chexpert_plus(CHEXPERT_PLUS.root(out_root), studies, seed, dirty),
    }


# --- CheXpert ----------------------------------------------------------------------------------------
def _image_size(seed: int, image_id: str) -> tuple[int, int]:
    rng = rng_for(seed, "chexpert", "size", image_id)
    return int(rng.integers(96, 121)), int(rng.integers(108, 137))  # portrait, like the release


def _pixels(seed: int, image_id: str, case: Case) -> Image.Image:
    width, height = _image_size(seed, image_id)
    pixels = render_radiograph(case, width, height, rng_for(seed, "chexpert", "pixels", image_id))
    return Image.fromarray(to_uint8(pixels), mode="L")


def _faults(dirt: dict[str, str], image_id: str) -> set[str]:
    return {fault for fault, target in dirt.items() if target == image_id}


def _write_chexpert(root: Path, studies: list[Study], seed: int, dirty: bool) -> dict[str, int]:
    dirt = DIRT[CHEXPERT.key] if dirty else {}
    counts = {}
    for split in ("train", "valid", "test"):
        folder = root / (TEST_FOLDER if split == "test" else RELEASE_FOLDER)
        rows: list[dict[str, str]] = []
        for study in (s for s in studies if s.split == split):
            for image_id, case in study.views():
                faults = _faults(dirt, image_id)
                image_path = folder / f"{image_id}.jpg"
                image_path.parent.mkdir(parents=True, exist_ok=True)
                if "missing_image" not in faults:
                    _pixels(seed, image_id, case).save(image_path, "JPEG", quality=85)
                if "unreadable_image" in faults:
                    data = image_path.read_bytes()
                    image_path.write_bytes(data[: len(data) // 2])
                rows.extend(_chexpert_rows(split, image_id, case, faults))
        if split == "test":
            _write_csv(root / TEST_LABELS, TEST_COLUMNS, rows)
        else:
            _write_csv(folder / f"{split}.csv", CHEXPERT_COLUMNS, rows)
        counts[f"{split}_rows"] = len(rows)
    counts["images"] = sum(1 for _ in root.rglob("*.jpg"))
    return counts


def _chexpert_labels(split: str, case: Case) -> dict[str, str]:
    """train: the labeler's 1.0 / 0.0 / -1.0 / blank; valid: radiologists' 1.0 / 0.0; test (CheXlocalize): 1 / 0."""
    values = chexpert_values(case, CHEXPERT_LABEL_ORDER)
    if split == "train":
        return values
    present, absent = ("1.0", "0.0") if split == "valid" else ("1", "0")
    return {name: present if value == "1.0" else absent for name, value in values.items()}


def _chexpert_rows(split: str, image_id: str, case: Case, faults: set[str]) -> list[dict[str, str]]:
    labels = _chexpert_labels(split, case)
    if split == "test":  # the CheXlocalize labels file: paths relative to its CheXpert/ folder, no metadata
        return [{"Path": f"{image_id}.jpg", **labels}]
    row = {
        "Path": f"{RELEASE_FOLDER}/{image_id}.jpg",
        "Sex": "" if "missing_sex" in faults else SEXES[case.sex],
        "Age": str(case.age),
        "Frontal/Lateral": "Frontal" if case.frontal else "Lateral",
        "AP/PA": case.view if case.frontal and "missing_ap_pa" not in faults else "",
        **labels,
    }
    if "unknown_label_value" in faults:
        row.update({"Cardiomegaly": "2.0", "Edema": "yes"})
    rows = [row]
    if "duplicate_row" in faults:
        rows.append(dict(row))
    if "empty_path" in faults:
        rows.append({**row, "Path": ""})
    return rows


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, str]]) -> None:
    """Minimal quoting and blank for missing, as pandas ``to_csv`` wrote the releases."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


# --- CheXpert-Plus -----------------------------------------------------------------------------------
def _write_chexpert_plus(root: Path, studies: list[Study], seed: int, dirty: bool) -> dict[str, int]:
    dirt = DIRT[CHEXPERT_PLUS.key] if dirty else {}
    plus_studies = [
        s
        for s in studies
        if s.split == "valid"
        or (s.split == "train" and int(s.patient.removeprefix("patient")) <= PLUS_TRAIN_PATIENTS)
    ]
    rows: list[dict[str, str]] = []
    label_lines: list[str] = []
    for study in plus_studies:
        rng = rng_for(seed, "chexpert_plus", "report", study.folder)
        report, label_case = _plus_report(
            study, rng, empty="empty_report" in _faults(dirt, f"{study.folder}/view1_frontal")
        )
        demographics = _plus_demographics(seed, study)
        for image_id, case in study.views():
            faults = _faults(dirt, image_id)
            image_path = root / PLUS_IMAGE_FOLDER / f"{image_id}.png"
            image_path.parent.mkdir(parents=True, exist_ok=True)
            if "missing_image" not in faults:
                _pixels(seed, image_id, case).save(image_path, "PNG")
            row = {
                "path_to_image": f"{image_id}.jpg",
                "path_to_dcm": f"{image_id}.dcm",
                "frontal_lateral": "Frontal" if case.frontal else "Lateral",
                "ap_pa": case.view if case.frontal else "",
                "deid_patient_id": study.patient,
                "patient_report_date_order": str(study.number),
                **report,
                **demographics,
                "split": study.split,
            }
            rows.append(row)
            labels = {
                name: _json_label(value)
                for name, value in chexpert_values(label_case, CHEXPERT_LABEL_ORDER).items()
            }
            if "unknown_label_value" in faults:
                labels["Edema"] = "yes"
            line = json.dumps({"path_to_image": f"{image_id}.jpg", **labels})
            label_lines.append(line)
            if "duplicate_row" in faults:
                rows.append(dict(row))
                label_lines.append(line)
            if "malformed_json" in faults:
                label_lines.append(line[: len(line) // 2])
    if "unknown_image" in dirt:
        label_lines.append(
            json.dumps(
                {"path_to_image": f"{dirt['unknown_image']}.jpg", **{n: None for n in CHEXPERT_LABEL_ORDER}}
            )
        )
    _write_csv(root / PLUS_CSV, PLUS_COLUMNS, rows)
    (root / PLUS_LABELS).parent.mkdir(parents=True, exist_ok=True)
    (root / PLUS_LABELS).write_text("".join(f"{line}\n" for line in label_lines), encoding="utf-8")
    return {"rows": len(rows), "label_lines": len(label_lines), "images": sum(1 for _ in root.rglob("*.png"))}


def _json_label(value: str) -> float | None:
    """CheXbert's JSON lines hold numbers (1.0, 0.0, -1.0) and null where a label is not mentioned."""
    return float(value) if value else None


def _plus_report(study: Study, rng: np.random.Generator, empty: bool) -> tuple[dict[str, str], Case]:
    """The report columns of a study, and the case its labels must agree with.

    Many real CheXpert-Plus reports have an impression but no findings section; those reports only
    mention what the impression says, so their labels come from a case reduced to that.
    """
    case = study.case
    sections = report_sections(case, rng)
    impression_only = bool(rng.random() < 0.3)
    findings = "" if impression_only or empty else sections.findings.replace(". ", ".\n")
    items = [sections.impression]
    if case.has_prior and case.findings:
        items.append(
            f"{case.findings[0].finding.key.replace('_', ' ').capitalize()} again seen, unchanged from the prior study."
        )
    impression = "" if empty else "\n\n".join(f"{i}. {text}" for i, text in enumerate(items, 1))
    label_case = (
        dataclasses.replace(case, findings=case.findings[:2], negatives=[]) if impression_only else case
    )
    views = "Chest 2 Views" if study.has_lateral else "Chest 1 View"
    summary = "2-ABNORMAL" if case.findings else "1-NORMAL"
    accession = str(int(rng.integers(1_000_000, 9_999_999)))
    end_of_impression = f"{summary}\n{SIGN_OFF}"
    parts = [
        f"NARRATIVE:\n{views}",
        f"CLINICAL HISTORY: {sections.indication}",
        f"COMPARISON: {sections.comparison}",
        f"FINDINGS:\n{findings}" if findings else "",
        f"IMPRESSION:\n\n{impression}" if impression else "",
        f"SUMMARY: {end_of_impression}",
        f"ACCESSION NUMBER:\n{accession}\n{ANONYMISED}",
    ]
    report = {
        "report": "\n\n".join(part for part in parts if part),
        "section_narrative": views,
        "section_clinical_history": sections.indication,
        "section_history": "",
        "section_comparison": sections.comparison,
        "section_technique": "",
        "section_procedure_comments": "",
        "section_findings": findings,
        "section_impression": impression,
        "section_end_of_impression": end_of_impression,
        "section_summary": "",
        "section_accession_number": accession,
    }
    return report, label_case


def _plus_demographics(seed: int, study: Study) -> dict[str, str]:
    rng = rng_for(seed, "chexpert_plus", "patient", study.patient)  # per patient: the same on every study
    return {
        "age": f"{float(study.case.age):.1f}",
        "sex": SEXES[study.case.sex],
        "race": RACES[int(rng.integers(len(RACES)))],
        "ethnicity": ETHNICITIES[int(rng.integers(len(ETHNICITIES)))],
        "interpreter_needed": "No",
        "insurance_type": INSURANCE[int(rng.integers(len(INSURANCE)))],
        "recent_bmi": f"{rng.uniform(17, 38):.1f}",
        "deceased": "No",
    }


# --- Paper scale, metadata only -----------------------------------------------------------------------
# Real sizes: CheXpert train 187,641 studies / 223,414 images of 64,540 patients (MIMIC-CXR: 227,835
# studies); valid 200 studies; test 500 studies. CheXpert-Plus: the train and valid images.
TRAIN_STUDIES_PER_MIMIC_STUDY = 187_641 / 227_835
LATERAL_SHARE = 223_414 / 187_641 - 1
SCALE_SPLITS = (
    ("train", 1, 3),
    ("valid", 64541, 1),
    ("test", 64741, 1),
)  # split, first patient, studies/patient
SCALE_POOL = 64  # distinct synthetic studies the rows cycle through (reports and labels agree per study)
SCALE_PIXEL_POOL = 16  # distinct images per view kind the image files cycle through


def write_scale(
    out_root: Path, seed: int, studies: int, files: FileJobs | None = None
) -> dict[str, dict[str, int]]:
    """The CSVs and label lines at paper scale; with ``files`` every image they name is queued there
    (JPEGs for CheXpert, the 8-bit PNGs of CheXpert-Plus), otherwise there are none."""
    pool = _scale_pool(seed)
    frames = {
        split: _scale_images(seed, split, first, per_patient, size, pool.height)
        for (split, first, per_patient), size in zip(
            SCALE_SPLITS, (round(studies * TRAIN_STUDIES_PER_MIMIC_STUDY), 200, 500), strict=True
        )
    }
    chexpert_root, plus_root = CHEXPERT.root(out_root), CHEXPERT_PLUS.root(out_root)
    label_columns = [pl.col(f"chexpert_{name}").alias(name) for name in CHEXPERT_LABEL_ORDER]
    images: list[pl.DataFrame] = []  # (path, pixel pool index) of every file the tables name
    for split in ("train", "valid"):
        frame = frames[split].join(pool, on="pool", how="left").sort("image_id")
        listed = frame.select(
            pl.format("{}/{}.jpg", pl.lit(RELEASE_FOLDER), "image_id").alias("Path"),
            "Sex",
            "Age",
            "Frontal/Lateral",
            "AP/PA",
            *label_columns,
        )
        write_table(chexpert_root / RELEASE_FOLDER / f"{split}.csv", listed.write_csv())
        images.append(_pool_items(listed, CHEXPERT.folder, pl.col("Path")))
    test = frames["test"].join(pool, on="pool", how="left").sort("image_id")
    listed = test.select(
        (pl.col("image_id") + ".jpg").alias("Path"),
        *[
            (pl.col(f"chexpert_{name}") == "1.0").fill_null(False).cast(pl.Int8).alias(name)
            for name in CHEXPERT_LABEL_ORDER
        ],
        "Frontal/Lateral",
    )
    write_table(chexpert_root / TEST_LABELS, listed.drop("Frontal/Lateral").write_csv())
    images.append(_pool_items(listed, CHEXPERT.folder, pl.lit(f"{TEST_FOLDER}/") + pl.col("Path")))

    plus = pl.concat([frames["train"], frames["valid"]]).join(pool, on="pool", how="left").sort("image_id")
    listed = plus.select(
        (pl.col("image_id") + ".jpg").alias("path_to_image"),
        (pl.col("image_id") + ".dcm").alias("path_to_dcm"),
        pl.col("Frontal/Lateral").alias("frontal_lateral"),
        pl.col("AP/PA").alias("ap_pa"),
        pl.col("image_id").str.split("/").list.get(1).alias("deid_patient_id"),
        pl.col("image_id").str.extract(r"/study(\d+)/").alias("patient_report_date_order"),
        *PLUS_REPORT_COLUMNS,
        pl.col("Age").cast(pl.Float64).alias("age"),
        pl.col("Sex").alias("sex"),
        *[
            pl.lit(value).alias(name)
            for name, value in (
                ("race", "Unknown"),
                ("ethnicity", "Unknown"),
                ("interpreter_needed", "No"),
                ("insurance_type", "Unknown"),
                ("recent_bmi", None),
                ("deceased", "No"),
            )
        ],
        pl.col("split"),
    )
    write_table(plus_root / PLUS_CSV, listed.write_csv())
    write_table(
        plus_root / PLUS_LABELS,
        plus.select(
            (pl.col("image_id") + ".jpg").alias("path_to_image"),
            *[pl.col(f"plus_{name}").alias(name) for name in CHEXPERT_LABEL_ORDER],
        ).write_ndjson(),
    )
    if files is not None:
        files.add(functools.partial(write_pooled, jpeg_pool), pl.concat(images).rows(), "chexpert images")
        plus_images = _pool_items(
            listed.rename({"frontal_lateral": "Frontal/Lateral"}),
            CHEXPERT_PLUS.folder,
            pl.format(
                "{}/{}.png", pl.lit(PLUS_IMAGE_FOLDER), pl.col("path_to_image").str.strip_suffix(".jpg")
            ),
        )
        files.add(functools.partial(write_pooled, png_pool), plus_images.rows(), "chexpert_plus images")
    return {
        CHEXPERT.key: {f"{split}_rows": frames[split].height for split in frames},
        CHEXPERT_PLUS.key: {"rows": plus.height, "label_lines": plus.height},
    }


def _pool_items(listed: pl.DataFrame, folder: str, path: pl.Expr) -> pl.DataFrame:
    """(path under the data root, pixel pool index) per listed image: the pool cycles with the row, and
    laterals take the pool's lateral half."""
    return listed.select(
        (pl.lit(f"{folder}/") + path).alias("file"),
        (
            pl.int_range(pl.len()) % SCALE_PIXEL_POOL
            + SCALE_PIXEL_POOL * (pl.col("Frontal/Lateral") == "Lateral")
        )
        .cast(pl.Int64)
        .alias("pool"),
    )


def _pixel_pool(seed: int) -> list[Image.Image]:
    """``SCALE_PIXEL_POOL`` frontal radiographs, then as many laterals, drawn as the sample's are."""
    cases = [
        sample_case(rng_for(seed, "chexpert", "pixel pool", k), lateral_fraction=0.0)
        for k in range(SCALE_PIXEL_POOL)
    ]
    return [
        _pixels(seed, f"pixel-pool/{k}", dataclasses.replace(case, view=view or case.view))
        for view in (None, "LATERAL")
        for k, case in enumerate(cases)
    ]


def _encoded(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.getvalue()


def jpeg_pool(seed: int) -> list[bytes]:
    return [_encoded(image, format="JPEG", quality=85) for image in _pixel_pool(seed)]


def png_pool(seed: int) -> list[bytes]:
    return [_encoded(image, format="PNG") for image in _pixel_pool(seed)]


def _scale_pool(seed: int) -> pl.DataFrame:
    """A few synthetic studies with report columns and both datasets' labels, one row each."""
    records = []
    for index in range(SCALE_POOL):
        rng = rng_for(seed, "chexpert", "scale_pool", index)
        case = sample_case(rng, lateral_fraction=0.0)
        report, label_case = _plus_report(Study("train", "patient00000", 1, case, False), rng, empty=False)
        chexpert_labels = chexpert_values(case, CHEXPERT_LABEL_ORDER)
        plus_labels = chexpert_values(label_case, CHEXPERT_LABEL_ORDER)
        records.append(
            {
                "pool": index,
                **report,
                **{f"chexpert_{name}": value for name, value in chexpert_labels.items()},
                **{f"plus_{name}": _json_label(value) for name, value in plus_labels.items()},
            }
        )
    frame = pl.DataFrame(records)
    return frame.with_columns(
        pl.col(name).replace("", None) for name in frame.columns if frame[name].dtype == pl.String
    )


def _scale_images(
    seed: int, split: str, first_patient: int, per_patient: int, studies: int, pool: int
) -> pl.DataFrame:
    """One row per image: a frontal per study plus laterals for a share of studies, vectorised."""
    rng = rng_for(seed, "chexpert", "scale", split)
    index = np.arange(studies)
    patient = first_patient + index // per_patient
    patients = int(patient.max() - first_patient + 1) if studies else 0
    sex = np.where(rng.random(patients) < 0.5, "Male", "Female")
    age = rng.integers(20, 85, size=patients)
    study = pl.DataFrame(
        {
            "patient": patient,
            "study": index % per_patient + 1,
            "Sex": sex[patient - first_patient],
            "Age": age[patient - first_patient] + index % per_patient,
            "AP/PA": np.where(rng.random(studies) < 0.7, "AP", "PA"),
            "pool": rng.integers(0, pool, size=studies),
            "lateral": rng.random(studies) < LATERAL_SHARE,
        }
    )
    frontal = study.with_columns(
        pl.lit("view1_frontal").alias("view"), pl.lit("Frontal").alias("Frontal/Lateral")
    )
    lateral = study.filter("lateral").with_columns(
        pl.lit("view2_lateral").alias("view"),
        pl.lit("Lateral").alias("Frontal/Lateral"),
        pl.lit(None).alias("AP/PA"),
    )
    return pl.concat([frontal, lateral]).select(
        pl.format(
            "{}/patient{}/study{}/{}",
            pl.lit(split),
            pl.col("patient").cast(pl.String).str.zfill(5),
            "study",
            "view",
        ).alias("image_id"),
        "Sex",
        "Age",
        "Frontal/Lateral",
        "AP/PA",
        "pool",
        pl.lit(split).alias("split"),
    )
