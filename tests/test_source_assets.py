"""The source assets through Dagster: the bundled sample is what the generator writes, every check
passes on clean and dirty data, and a missing dataset fails its asset alone."""

import shutil

import numpy as np
import polars as pl
import pytest
from dagster import DagsterInstance, materialize
from PIL import Image
from sample_digests import folder_digests

from assets.sources import source_assets, source_checks
from radvlm_pipeline.layout import BUNDLED_SAMPLE_ROOT, StorageLayout
from radvlm_pipeline.sample_data.cli import generate
from radvlm_pipeline.sample_data.common import Variant
from radvlm_pipeline.sources.base import read_table
from resources.storage import PipelineStorage

SOURCES = {"mimic_cxr", "chexpert", "chexpert_plus", "chest_imagenome", "vindr_cxr", "ms_cxr", "padchest_gr"}


@pytest.fixture(scope="module")
def dirty_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dirty_sample")
    generate(root, seed=0, variant=Variant.DIRTY)
    return root


def run_sources(data_root, storage_root):
    storage = PipelineStorage(data_root=str(data_root), storage_root=str(storage_root))
    return materialize(
        [*source_assets, *source_checks],
        resources={"storage": storage},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


IMAGE_SUFFIXES = (".jpg", ".png")


def test_bundled_sample_is_what_the_generator_writes(tmp_path):
    """Every file byte for byte, except encoded images, compared by their pixels: a Pillow or libjpeg
    upgrade may re-encode the same pixels differently without the generator having changed."""
    generate(tmp_path, seed=0, variant=Variant.CLEAN)
    fresh, bundled = folder_digests(tmp_path), folder_digests(BUNDLED_SAMPLE_ROOT)
    stale = "data/sample is stale: run `make sample-data` and commit the result"
    assert fresh.keys() == bundled.keys(), stale
    for name in sorted(fresh):
        if fresh[name] == bundled[name]:
            continue
        assert name.endswith(IMAGE_SUFFIXES), f"{name}: {stale}"
        with Image.open(tmp_path / name) as new, Image.open(BUNDLED_SAMPLE_ROOT / name) as old:
            assert (new.size, new.mode) == (old.size, old.mode), f"{name}: {stale}"
            difference = np.abs(np.asarray(new, dtype=float) - np.asarray(old, dtype=float))
            full_scale = 65535.0 if old.mode.startswith("I") else 255.0
            assert difference.mean() < 0.01 * full_scale, f"{name}: {stale}"


@pytest.mark.slow
def test_dirty_sample_materializes_with_every_check_passing(dirty_root, tmp_path):
    result = run_sources(dirty_root, tmp_path)
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == SOURCES
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 4 * len(SOURCES)
    assert all(e.passed for e in evaluations), [
        (e.asset_key, e.check_name) for e in evaluations if not e.passed
    ]
    for source in SOURCES:
        quarantine = read_table(StorageLayout(tmp_path), source, "quarantine")
        assert quarantine.filter(pl.col("kind") == "invalid").height > 0, (
            f"{source}: the dirty faults were not quarantined"
        )
        assert quarantine["detail"].null_count() == 0
    metadata = next(
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "vindr_cxr"
    ).materialization.metadata
    assert "boxes_example" in metadata and "data:image/png;base64," in metadata["boxes_example"].value
    assert metadata["facts/wbf_iou_thr"].value == 0.1
    assert metadata["facts/boxes_merged_by_fusion"].value > 0


@pytest.mark.slow
def test_missing_dataset_fails_its_asset_and_leaves_the_others(tmp_path):
    data_root = tmp_path / "data"
    shutil.copytree(BUNDLED_SAMPLE_ROOT, data_root, ignore=shutil.ignore_patterns("vindr-cxr"))
    result = run_sources(data_root, tmp_path / "storage")
    assert not result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == SOURCES - {"vindr_cxr"}
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "vindr-cxr" in failure.event_specific_data.user_failure_data.description
