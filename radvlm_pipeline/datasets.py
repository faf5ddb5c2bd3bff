"""The seven source datasets: folder under the data root, release the reader targets, licence class.

The licence class matters beyond bookkeeping: credentialed data (PhysioNet, Stanford AIMI, BIMCV
agreements) may only be sent to LLM endpoints the user has approved for that dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class Licence(str, Enum):
    CREDENTIALED = "credentialed"
    OPEN = "open"


@dataclass(frozen=True)
class Dataset:
    key: str  # snake_case; also the Dagster asset name of the source
    folder: str  # folder under the data root
    title: str
    release: str  # the release the reader targets
    licence: Licence
    frontal_only: bool  # the paper keeps PA/AP views only

    def root(self, data_root: Path) -> Path:
        return data_root / self.folder


MIMIC_CXR = Dataset(
    "mimic_cxr",
    "mimic-cxr",
    "MIMIC-CXR-JPG (+ MIMIC-CXR reports)",
    "MIMIC-CXR-JPG 2.0.0 / MIMIC-CXR 2.0.0",
    Licence.CREDENTIALED,
    True,
)
CHEXPERT = Dataset("chexpert", "chexpert", "CheXpert", "CheXpert v1.0 (small)", Licence.CREDENTIALED, True)
CHEXPERT_PLUS = Dataset(
    "chexpert_plus",
    "chexpert-plus",
    "CheXpert-Plus",
    "CheXpert-Plus (df_chexpert_plus_240401)",
    Licence.CREDENTIALED,
    True,
)
CHEST_IMAGENOME = Dataset(
    "chest_imagenome",
    "chest-imagenome",
    "Chest ImaGenome",
    "Chest ImaGenome 1.0.0 (silver)",
    Licence.CREDENTIALED,
    True,
)
VINDR_CXR = Dataset("vindr_cxr", "vindr-cxr", "VinDr-CXR", "VinDr-CXR 1.0.0", Licence.CREDENTIALED, False)
MS_CXR = Dataset("ms_cxr", "ms-cxr", "MS-CXR", "MS-CXR 1.0.0", Licence.CREDENTIALED, True)
PADCHEST_GR = Dataset(
    "padchest_gr",
    "padchest-gr",
    "PadChest-GR",
    "PadChest-GR (grounded_reports_20240819)",
    Licence.CREDENTIALED,
    True,
)

DATASETS: dict[str, Dataset] = {
    d.key: d for d in (MIMIC_CXR, CHEXPERT, CHEXPERT_PLUS, CHEST_IMAGENOME, VINDR_CXR, MS_CXR, PADCHEST_GR)
}
