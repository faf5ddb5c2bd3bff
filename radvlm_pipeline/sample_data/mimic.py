"""The MIMIC-CXR family of the sample: MIMIC-CXR, and Chest ImaGenome and MS-CXR annotating its images.

The three are written together because Chest ImaGenome and MS-CXR annotate MIMIC-CXR images, as in
reality: both refer to frontal images of this MIMIC-CXR sample (``mimic_cxr.plan``), region boxes lie on
the drawn anatomy and MS-CXR phrases and boxes come from the same case as the image's pixels, report and
labels. Each dataset's writer is the module of its name.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path

import polars as pl

from radvlm_pipeline.datasets import CHEST_IMAGENOME, MIMIC_CXR, MS_CXR
from radvlm_pipeline.sample_data import chest_imagenome, mimic_cxr, ms_cxr
from radvlm_pipeline.sample_data.common import Fault, Variant, rng_for
from radvlm_pipeline.sample_data.files import FileJobs, complete_file
from radvlm_pipeline.schema import VIEWS_FRONTAL
from radvlm_pipeline.sources.chest_imagenome import scene_graph_file

DIRT = {
    MIMIC_CXR.key: mimic_cxr.DIRT,
    CHEST_IMAGENOME.key: chest_imagenome.DIRT,
    MS_CXR.key: ms_cxr.DIRT,
}


def write(out_root: Path, seed: int, variant: Variant) -> dict[str, dict[str, int]]:
    studies = mimic_cxr.plan(seed)
    dirty = variant is Variant.DIRTY
    return {
        MIMIC_CXR.key: mimic_cxr.write(MIMIC_CXR.root(out_root), studies, seed, dirty),
        CHEST_IMAGENOME.key: chest_imagenome.write(CHEST_IMAGENOME.root(out_root), studies, seed, dirty),
        MS_CXR.key: ms_cxr.write(MS_CXR.root(out_root), studies, seed, dirty),
    }


def write_scale(
    out_root: Path, seed: int, studies: int, files: FileJobs | None = None, later_studies: int = 0
) -> dict[str, dict[str, int]]:
    """The three datasets' tables at about ``studies`` MIMIC-CXR studies, from one generator drawn in a
    fixed order (so a seed gives the same files); with ``files``, their JPEGs, report files and scene
    graphs are queued there. ``later_studies`` > 0 writes a later MIMIC-CXR release instead: the same
    studies plus that many of new patients (Chest ImaGenome and MS-CXR unchanged)."""
    rng = rng_for(seed, "mimic", "scale")
    later = (rng_for(seed, "mimic", "scale", "later release"), later_studies) if later_studies else None
    images, mimic_counts = mimic_cxr.write_scale(
        MIMIC_CXR.root(out_root), rng, studies, chest_imagenome.SCALE_SUBJECT_SHARES, files, later
    )
    frontal = images.filter(pl.col("ViewPosition").is_in(VIEWS_FRONTAL) & ~pl.col("later_release"))
    if files is not None:
        files.add(_write_study_files, _study_items(images), "mimic_cxr reports, chest_imagenome scene graphs")
    return {
        MIMIC_CXR.key: mimic_counts,
        CHEST_IMAGENOME.key: chest_imagenome.write_scale(
            CHEST_IMAGENOME.root(out_root), frontal, scene_graphs=files is not None
        ),
        MS_CXR.key: ms_cxr.write_scale(MS_CXR.root(out_root), frontal, rng, studies),
    }


def _study_items(images: pl.DataFrame) -> list[tuple]:
    """One picklable item per study: what ``_write_study_files`` needs to rebuild it."""
    return (
        images.group_by("study_id", maintain_order=True)
        .agg(
            pl.col("subject_id", "split", "order", "StudyDate", "imagenome").first(),
            pl.col("dicom_id", "ViewPosition", "Columns", "Rows"),
        )
        .select(
            "subject_id",
            "study_id",
            "split",
            "order",
            "StudyDate",
            "imagenome",
            "dicom_id",
            "ViewPosition",
            "Columns",
            "Rows",
        )
        .rows()
    )


def _write_study_files(out_root: Path, seed: int, items: list[tuple]) -> int:
    """A ``FileJobs`` job: each study's report file and the scene graphs of its frontal images (if its
    patient is in Chest ImaGenome), both from the study's one case, as in the bundled sample."""
    written = 0
    for subject_id, study_id, split, order, day, imagenome, dicom_ids, views, widths, heights in items:
        patient = rng_for(seed, "mimic", "scale subject", subject_id)
        sex, age = ("M" if patient.random() < 0.5 else "F"), int(patient.integers(20, 90))
        case = mimic_cxr.study_case(rng_for(seed, "mimic", "study", study_id), order, views[0], sex, age)
        study = mimic_cxr.MimicStudy(
            subject_id,
            study_id,
            split,
            order,
            datetime.strptime(day, "%Y%m%d").date(),
            "",
            case,
            tuple(
                mimic_cxr.MimicImage(*image) for image in zip(dicom_ids, views, widths, heights, strict=True)
            ),
        )
        written += complete_file(
            MIMIC_CXR.root(out_root) / study.report_path,
            functools.partial(mimic_cxr.report_text, study, seed),
        )
        for image in study.frontal_images() if imagenome else ():
            written += complete_file(
                CHEST_IMAGENOME.root(out_root) / scene_graph_file(image.dicom_id),
                functools.partial(chest_imagenome.scene_graph_json, study, image, seed),
            )
    return written


def faults(seed: int) -> dict[str, dict[str, Fault]]:
    """Where each fault of ``DIRT`` lies in the dirty sample: dataset -> fault -> Fault."""
    studies = mimic_cxr.plan(seed)
    return {
        MIMIC_CXR.key: mimic_cxr.faults(studies, seed),
        CHEST_IMAGENOME.key: chest_imagenome.faults(studies, seed),
        MS_CXR.key: ms_cxr.faults(studies, seed),
    }
