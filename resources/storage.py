"""Where the pipeline reads datasets from and writes outputs to."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from radvlm_pipeline import config
from radvlm_pipeline.sources.base import source_output_dir


class PipelineStorage(ConfigurableResource):
    """The data root (the seven dataset folders side by side) and the storage root (all outputs)."""

    data_root: str = Field(
        description="Folder holding mimic-cxr/, chexpert/, ... (default: the bundled sample)."
    )
    storage_root: str = Field(
        description="Folder every asset writes its Parquet tables, images and models under."
    )

    @classmethod
    def from_environment(cls) -> PipelineStorage:
        """Read RADVLM_DATA_ROOT / RADVLM_STORAGE_ROOT at run time, falling back to the project defaults."""
        import os

        return cls(
            data_root=EnvVar(config.DATA_ROOT_ENV)
            if os.environ.get(config.DATA_ROOT_ENV)
            else str(config.BUNDLED_SAMPLE_ROOT),
            storage_root=EnvVar(config.STORAGE_ROOT_ENV)
            if os.environ.get(config.STORAGE_ROOT_ENV)
            else str(config.DEFAULT_STORAGE_ROOT),
        )

    @property
    def data_path(self) -> Path:
        return Path(self.data_root)

    @property
    def storage_path(self) -> Path:
        return Path(self.storage_root)

    def source_dir(self, source: str) -> Path:
        return source_output_dir(self.storage_path, source)
