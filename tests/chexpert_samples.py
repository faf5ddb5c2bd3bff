"""The written CheXpert family (CheXpert and CheXpert-Plus come from one writer) for both readers' tests."""

from pathlib import Path

import pytest

from radvlm_pipeline.sample_data import chexpert as writer
from radvlm_pipeline.sample_data.common import Variant


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chexpert_clean")
    writer.write(root, seed=0, variant=Variant.CLEAN)
    return root


@pytest.fixture(scope="module")
def dirty_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chexpert_dirty")
    writer.write(root, seed=0, variant=Variant.DIRTY)
    return root
