"""Where the pipeline reads datasets from and writes outputs to."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from radvlm_pipeline.layout import (
    BUNDLED_SAMPLE_ROOT,
    DATA_ROOT_ENV,
    DEFAULT_STORAGE_ROOT,
    STORAGE_ROOT_ENV,
    StorageLayout,
)


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
            data_root=EnvVar(DATA_ROOT_ENV) if os.environ.get(DATA_ROOT_ENV) else str(BUNDLED_SAMPLE_ROOT),
            storage_root=EnvVar(STORAGE_ROOT_ENV)
            if os.environ.get(STORAGE_ROOT_ENV)
            else str(DEFAULT_STORAGE_ROOT),
        )

    @property
    def data_path(self) -> Path:
        return Path(self.data_root)

    @property
    def storage_path(self) -> Path:
        return Path(self.storage_root)

    @property
    def layout(self) -> StorageLayout:
        """The one place assets ask where a stage's files are, so no asset builds a path of its own."""
        return StorageLayout(self.storage_path)
