"""Fixtures shared by several test modules (pytest finds them here; no imports needed)."""

from pathlib import Path

import pytest

from radvlm_pipeline.sample_data import chexpert as chexpert_writer
from radvlm_pipeline.sample_data.common import Variant


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory) -> Path:
    """The CheXpert family (CheXpert and CheXpert-Plus come from one writer), clean."""
    root = tmp_path_factory.mktemp("chexpert_clean")
    chexpert_writer.write(root, seed=0, variant=Variant.CLEAN)
    return root


@pytest.fixture(scope="module")
def dirty_root(tmp_path_factory) -> Path:
    """The CheXpert family with each fault in a known row."""
    root = tmp_path_factory.mktemp("chexpert_dirty")
    chexpert_writer.write(root, seed=0, variant=Variant.DIRTY)
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from radvlm_pipeline.training.tiny_model import build_model_directory

    return build_model_directory(tmp_path_factory.mktemp("models") / "tiny-llava-onevision")
