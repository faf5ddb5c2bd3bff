"""The MIMIC-CXR family of the sample: MIMIC-CXR, and Chest ImaGenome and MS-CXR annotating its images.

The three are written together because Chest ImaGenome and MS-CXR annotate MIMIC-CXR images, as in
reality: both refer to frontal images of this MIMIC-CXR sample (``mimic_cxr.plan``), region boxes lie on
the drawn anatomy and MS-CXR phrases and boxes come from the same case as the image's pixels, report and
labels. Each dataset's writer is the module of its name.
"""

from __future__ import annotations

from pathlib import Path

from radvlm_pipeline.datasets import CHEST_IMAGENOME, MIMIC_CXR, MS_CXR
from radvlm_pipeline.sample_data import chest_imagenome, mimic_cxr, ms_cxr
from radvlm_pipeline.sample_data.common import Fault, Variant, rng_for

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


def write_scale(out_root: Path, seed: int, studies: int) -> dict[str, dict[str, int]]:
    """The three datasets' tables at about ``studies`` MIMIC-CXR studies, from one generator drawn in a
    fixed order (so a seed gives the same files)."""
    rng = rng_for(seed, "mimic", "scale")
    frontal, mimic_counts = mimic_cxr.write_scale(
        MIMIC_CXR.root(out_root), rng, studies, chest_imagenome.SCALE_SUBJECT_SHARES
    )
    return {
        MIMIC_CXR.key: mimic_counts,
        CHEST_IMAGENOME.key: chest_imagenome.write_scale(CHEST_IMAGENOME.root(out_root), frontal),
        MS_CXR.key: ms_cxr.write_scale(MS_CXR.root(out_root), frontal, rng, studies),
    }


def faults(seed: int) -> dict[str, dict[str, Fault]]:
    """Where each fault of ``DIRT`` lies in the dirty sample: dataset -> fault -> Fault."""
    studies = mimic_cxr.plan(seed)
    return {
        MIMIC_CXR.key: mimic_cxr.faults(studies, seed),
        CHEST_IMAGENOME.key: chest_imagenome.faults(studies, seed),
        MS_CXR.key: ms_cxr.faults(studies, seed),
    }
