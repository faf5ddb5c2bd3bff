"""Where the corpus reads from: the canonical source tables and the two LLM-stage outputs, as lazy scans."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from radvlm_pipeline.sources.base import source_output_dir

CLEAN_REPORTS_FILE = Path("llm") / "reports_without_priors.parquet"
CONVERSATIONS_FILE = Path("llm") / "conversations.parquet"


class CorpusInputMissing(FileNotFoundError):
    """An upstream table the corpus needs has not been written yet."""


class CorpusInputs:
    def __init__(self, storage_root: Path):
        self.storage_root = Path(storage_root)

    def table(self, source: str, name: str) -> pl.LazyFrame:
        """``images``, ``reports``, ``labels`` or ``boxes`` of one source."""
        return self._scan(
            source_output_dir(self.storage_root, source) / f"{name}.parquet", f"the {source} asset"
        )

    def images(self, source: str, splits: tuple[str, ...]) -> pl.LazyFrame:
        """The images of some splits, with the columns every sample carries."""
        return (
            self.table(source, "images")
            .filter(pl.col("split").is_in(list(splits)))
            .select(
                "image_id",
                "study_id",
                "subject_id",
                "split",
                pl.col("dataset").alias("image_dataset"),
                pl.col("path").alias("image_path"),
            )
        )

    def clean_reports(self) -> pl.LazyFrame:
        return self._scan(self.storage_root / CLEAN_REPORTS_FILE, "the reports_without_priors asset")

    def conversations(self) -> pl.LazyFrame:
        return self._scan(self.storage_root / CONVERSATIONS_FILE, "the conversations asset")

    @staticmethod
    def _scan(path: Path, producer: str) -> pl.LazyFrame:
        if not path.is_file():
            raise CorpusInputMissing(f"{path} does not exist: materialize {producer} first.")
        return pl.scan_parquet(path)
