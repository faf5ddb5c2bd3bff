"""Group "sources": one asset per dataset reading its released layout into the canonical tables.

Each asset writes ``<storage_root>/sources/<dataset>/{images,reports,labels,boxes,quarantine,accounting}
.parquet`` and carries four asset checks (rows accounted for, boxes in range, images decode, no patient in
two splits). A missing dataset folder fails that asset alone; the others still materialize.
"""

from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from assets.corpus_inputs import record_corpus_inputs
from assets.metadata import column_schema, counts_markdown, image_markdown, preview
from assets.policies import raw_dataset_dep, rebuild_when_upstream_changes
from assets.versions import code_version, files_data_version, project_modules
from radvlm_pipeline.images import ImageCheck, draw_boxes
from radvlm_pipeline.labels import UncertainPolicy
from radvlm_pipeline.layout import image_root
from radvlm_pipeline.markdown import markdown_table
from radvlm_pipeline.schema import IMAGES_SCHEMA
from radvlm_pipeline.sources import base, checks
from radvlm_pipeline.sources.base import ReaderOptions, SourceReader, SourceTables
from radvlm_pipeline.sources.registry import READERS
from resources.storage import PipelineStorage

# The readers' own defaults, so the launchpad offers what a reader called without options does.
READER_DEFAULTS = ReaderOptions()


class SourceReaderConfig(Config):
    """Reader options a user may change per run from the launchpad."""

    uncertain_labels: UncertainPolicy = Field(
        READER_DEFAULTS.uncertain,
        description="What an uncertain CheXpert label (-1.0) becomes (paper: absent).",
    )
    image_check: ImageCheck = Field(
        READER_DEFAULTS.image_check,
        description="How hard each referenced image is checked before a row is kept: exists, header, "
        "complete (header and end marker: catches truncated files; the default), verify (every byte: PNG "
        "CRCs, JPEG data at 1/8 scale) or decode (in full). Verdicts on unchanged files are reused.",
    )
    wbf_iou_thr: float = Field(
        READER_DEFAULTS.wbf_iou_thr,
        description="VinDr-CXR weighted box fusion: IoU above which the radiologists' boxes fuse "
        "(default 0.1, the paper's code). Metadata facts/boxes_merged_by_fusion shows its effect.",
    )
    wbf_skip_box_thr: float = Field(
        READER_DEFAULTS.wbf_skip_box_thr, description="VinDr-CXR weighted box fusion: minimum box confidence."
    )
    wbf_conf_type: str = Field(
        READER_DEFAULTS.wbf_conf_type, description="VinDr-CXR weighted box fusion: confidence aggregation."
    )
    dicom_max_side: int | None = Field(
        READER_DEFAULTS.dicom_max_side,
        description="VinDr-CXR: longest side of the converted PNG, aspect kept (None: the DICOM's full "
        "size, ~3000 px, hours on a small machine). Boxes stay normalised by the DICOM's own size.",
    )

    def reader_options(self, storage_root: Path) -> ReaderOptions:
        return ReaderOptions(
            uncertain=self.uncertain_labels,
            image_check=self.image_check,
            wbf_iou_thr=self.wbf_iou_thr,
            wbf_skip_box_thr=self.wbf_skip_box_thr,
            wbf_conf_type=self.wbf_conf_type,
            dicom_max_side=self.dicom_max_side,
            storage_root=storage_root,
        )


def reader_code_version(reader: SourceReader) -> str:
    """Changes whenever the reader or any project module it uses changes, so the UI marks the asset stale."""
    return code_version(*project_modules(reader))


def source_metadata(tables: SourceTables, source: str, storage: PipelineStorage) -> dict:
    images = tables.images
    quarantine = tables.quarantine
    metadata = {
        "dagster/row_count": images.height,
        "dagster/column_schema": column_schema(IMAGES_SCHEMA),
        "output_folder": MetadataValue.path(str(storage.layout.source_dir(source))),
        "images_by_split": counts_markdown(images, ["split"]),
        "reports": tables.reports.height,
        "label_rows": tables.labels.height,
        "boxes": tables.boxes.height,
        "quarantined_rows": quarantine.height,
        "quarantine_by_reason": counts_markdown(quarantine, ["kind", "reason"]),
        "rows_accounted": accounting_markdown(tables.accounting),
        "images_preview": preview(images),
    }
    if tables.reports.height:
        metadata["reports_preview"] = preview(tables.reports.select("study_id", "split", "report"))
    if tables.boxes.height:
        metadata["boxes_preview"] = preview(
            tables.boxes.select("image_id", "kind", "label", "x1", "y1", "x2", "y2")
        )
        example = box_example(tables, storage)
        if example is not None:
            example.save(storage.layout.source_boxes_example(source))
            metadata["boxes_example"] = image_markdown(
                example, "An image of this source with its boxes drawn"
            )
    for key, value in sorted(tables.facts.items()):
        metadata[f"facts/{key}"] = (
            value if isinstance(value, (int, float, str, bool)) else MetadataValue.json(value)
        )
    return metadata


def accounting_markdown(accounting: pl.DataFrame) -> MetadataValue:
    """Rows in/out per input file; per-study files (227k MIMIC reports, 242k scene graphs) are summed
    under one pattern such as ``files/pN/pN/sN.txt`` so the table stays readable on the real data."""
    patterned = accounting.with_columns(
        pl.col("file").str.replace_all(r"[0-9a-f]{8,}(-[0-9a-f]{8,})+", "*").str.replace_all(r"\d{2,}", "N")
    )
    grouped = (
        patterned.group_by("file")
        .agg(pl.len().alias("files"), pl.sum("rows_in", "rows_out", "rows_filtered", "rows_invalid"))
        .sort("file")
    )
    header = ["file", "files", "rows in", "out", "filtered", "invalid"]
    return MetadataValue.md(markdown_table(header, grouped.iter_rows()))


def box_example(tables: SourceTables, storage: PipelineStorage):
    """The image with the most boxes, drawn: a reader's coordinate bug shows at a glance."""
    busiest = (
        tables.boxes.group_by("image_id").len().sort(["len", "image_id"], descending=[True, False]).head(1)
    )
    if busiest.is_empty():
        return None
    image_id = busiest.item(0, "image_id")
    image = tables.images.filter(pl.col("image_id") == image_id).head(1)
    if image.is_empty():
        return None
    path = image_root(image.item(0, "dataset"), storage.data_path, storage.storage_path) / image.item(
        0, "path"
    )
    boxes = (
        tables.boxes.filter(pl.col("image_id") == image_id)
        .select("label", "x1", "y1", "x2", "y2")
        .iter_rows()
    )
    return draw_boxes(path, boxes)


def build_source_asset(reader: SourceReader) -> AssetsDefinition:
    dataset = reader.DATASET
    deps = [raw_dataset_dep(dataset.key), *(AssetKey(source) for source in reader.UPSTREAM)]

    @asset(
        name=dataset.key,
        group_name="sources",
        kinds={"polars", "parquet"},
        deps=deps,
        code_version=reader_code_version(reader),
        automation_condition=rebuild_when_upstream_changes(),
        description=(
            f"{dataset.title} ({dataset.release}) read from `<data_root>/{dataset.folder}/` into the canonical "
            f"images, reports, labels and boxes tables, with every rejected row in quarantine. "
            f"Licence class: {dataset.licence.value}."
        ),
        metadata={
            "dataset/release": dataset.release,
            "dataset/licence": dataset.licence.value,
            "dataset/folder": dataset.folder,
        },
    )
    def source_asset(
        context: AssetExecutionContext, config: SourceReaderConfig, storage: PipelineStorage
    ) -> MaterializeResult:
        options = config.reader_options(storage.storage_path)
        try:
            upstream = {
                source: base.read_table(storage.layout, source, "images") for source in reader.UPSTREAM
            }
            tables = reader.read(storage.data_path, options, upstream)
        except base.DatasetUnavailable as exc:
            # What a person must fix, without a stack trace; the other sources still materialize.
            raise Failure(description=str(exc), metadata={"data_root": str(storage.data_path)}) from exc
        written = base.write_tables(tables, storage.layout, dataset.key)
        record_corpus_inputs(context, storage)
        context.log.info(
            f"{dataset.key}: {tables.images.height} images, {tables.reports.height} reports, "
            f"{tables.boxes.height} boxes, {tables.quarantine.height} rows quarantined"
        )
        return MaterializeResult(
            metadata=source_metadata(tables, dataset.key, storage),
            data_version=files_data_version(written.values()),
        )

    return source_asset


def build_source_checks(key: str) -> list[AssetChecksDefinition]:

    def result(problems: list[str], what: str, severity=AssetCheckSeverity.ERROR) -> AssetCheckResult:
        return AssetCheckResult(
            passed=not problems,
            severity=severity,
            metadata={
                "problems": len(problems),
                "examples": MetadataValue.md("\n".join(f"- {p}" for p in problems[:20]) or what),
            },
        )

    @asset_check(
        asset=key,
        name="rows_accounted",
        blocking=True,
        description="Every input row is in an output table or in quarantine (rows in = out + quarantined).",
    )
    def rows_accounted(storage: PipelineStorage) -> AssetCheckResult:
        return result(
            checks.accounting_problems(
                base.read_table(storage.layout, key, "accounting"),
                base.read_table(storage.layout, key, "quarantine"),
            ),
            "every row accounted for",
        )

    @asset_check(
        asset=key,
        name="boxes_in_range",
        blocking=True,
        description="Every box normalised to [0, 1] with x1 < x2 and y1 < y2.",
    )
    def boxes_in_range(storage: PipelineStorage) -> AssetCheckResult:
        return result(checks.box_problems(base.read_table(storage.layout, key, "boxes")), "all boxes valid")

    @asset_check(
        asset=key,
        name="images_decode",
        description="Every image the tables reference exists and passes the image check (default: "
        "complete); the reader's verdicts on files unchanged since are reused, so this costs a stat each.",
    )
    def images_decode(storage: PipelineStorage) -> AssetCheckResult:
        images = base.read_table(storage.layout, key, "images")
        return result(
            checks.image_problems(images, storage.data_path, storage.storage_path), "all images decode"
        )

    @asset_check(
        asset=key,
        name="no_patient_in_two_splits",
        blocking=True,
        description="No patient appears in two splits (a leak would inflate test metrics).",
    )
    def no_patient_in_two_splits(storage: PipelineStorage) -> AssetCheckResult:
        images = base.read_table(storage.layout, key, "images")
        return result(checks.split_leak_problems(images), "no patient in two splits")

    return [rows_accounted, boxes_in_range, images_decode, no_patient_in_two_splits]


source_assets = [build_source_asset(reader) for reader in READERS.values()]
source_checks = [check for key in READERS for check in build_source_checks(key)]
