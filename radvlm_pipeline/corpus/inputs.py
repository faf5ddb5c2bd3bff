"""Where the corpus reads from: the canonical source tables and the two LLM-stage outputs, as lazy scans."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from radvlm_pipeline.layout import CLEAN_REPORTS, CONVERSATIONS, StorageLayout


class CorpusInputMissing(FileNotFoundError):
    """An upstream table the corpus needs has not been written yet."""


class CorpusInputs:
    def __init__(self, storage_root: Path):
        self.layout = StorageLayout(Path(storage_root))

    def table(self, source: str, name: str) -> pl.LazyFrame:
        """``images``, ``reports``, ``labels`` or ``boxes`` of one source."""
        return self._scan(self.layout.source_table(source, name), f"the {source} asset")

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
        return self._scan(self.layout.llm_output(CLEAN_REPORTS), f"the {CLEAN_REPORTS} asset")

    def conversations(self) -> pl.LazyFrame:
        return self._scan(self.layout.llm_output(CONVERSATIONS), f"the {CONVERSATIONS} asset")

    @staticmethod
    def _scan(path: Path, producer: str) -> pl.LazyFrame:
        if not path.is_file():
            raise CorpusInputMissing(f"{path} does not exist: materialize {producer} first.")
        return pl.scan_parquet(path)
