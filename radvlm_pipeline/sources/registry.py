"""Every reader by the key of its dataset: the source assets are built from this table alone."""

from radvlm_pipeline.sources import (
    chest_imagenome,
    chexpert,
    chexpert_plus,
    mimic_cxr,
    ms_cxr,
    padchest_gr,
    vindr_cxr,
)
from radvlm_pipeline.sources.base import SourceReader

READERS: dict[str, SourceReader] = {
    reader.DATASET.key: reader
    for reader in (mimic_cxr, chexpert, chexpert_plus, chest_imagenome, vindr_cxr, ms_cxr, padchest_gr)
}
