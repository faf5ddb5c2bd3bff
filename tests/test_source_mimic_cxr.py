"""The MIMIC-CXR reader on the synthetic sample (clean and dirty), its report sectioning, and the writer."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from PIL import Image
from sample_digests import folder_digests

from radvlm_pipeline.images import ImageCheck
from radvlm_pipeline.labels import UncertainPolicy
from radvlm_pipeline.sample_data import mimic
from radvlm_pipeline.sample_data import mimic_cxr as writer
from radvlm_pipeline.sample_data.common import Variant, chexpert_values
from radvlm_pipeline.schema import CHEXPERT_LABELS
from radvlm_pipeline.sources import checks, mimic_cxr, mimic_reports
from radvlm_pipeline.sources.base import DatasetUnavailable, ReaderOptions

SEED = 0


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[Variant, Path]:
    out = {}
    for variant in Variant:
        out[variant] = tmp_path_factory.mktemp(f"mimic-{variant.value}")
        mimic.write(out[variant], SEED, variant)
    return out


@pytest.fixture(scope="module")
def clean(roots):
    return mimic_cxr.read(roots[Variant.CLEAN], ReaderOptions())


@pytest.fixture(scope="module")
def dirty(roots):
    return mimic_cxr.read(roots[Variant.DIRTY], ReaderOptions())


@pytest.fixture(scope="module")
def studies():
    return writer.plan(SEED)


def test_frontal_images_per_split_and_laterals_filtered(clean, studies):
    expected = Counter(s.split for s in studies for _ in s.frontal_images())
    assert dict(clean.images.group_by("split").len().iter_rows()) == dict(expected)
    assert set(expected) == {"train", "validate", "test"}
    laterals = sum(len(s.images) - len(s.frontal_images()) for s in studies)
    assert laterals > 0
    assert clean.quarantine.group_by("kind", "reason").len().rows() == [
        ("filtered", "lateral_view", laterals)
    ]
    assert set(clean.images["view"]) == {"PA", "AP"}
    assert clean.reports.height == clean.labels.height == len(studies)


def test_image_rows_hold_release_values(clean, studies, roots):
    study = next(s for s in studies if len(s.frontal_images()) == 2)  # an AP, AP study
    rows = clean.images.filter(pl.col("study_id") == study.study_id).sort("image_id")
    assert rows.height == 2
    first = rows.row(0, named=True)
    image = next(i for i in study.images if i.dicom_id == first["image_id"])
    assert (
        first["path"]
        == f"files/p{study.subject_id[:2]}/p{study.subject_id}/s{study.study_id}/{image.dicom_id}.jpg"
    )
    assert first["subject_id"] == study.subject_id and first["split"] == study.split
    assert (first["width"], first["height"]) == (image.width, image.height)
    assert first["sex"] is None and first["dataset"] == "mimic_cxr"
    with Image.open(roots[Variant.CLEAN] / "mimic-cxr" / first["path"]) as jpeg:
        assert (jpeg.format, jpeg.mode, jpeg.size) == ("JPEG", "L", (image.width, image.height))


@pytest.mark.parametrize(
    "policy, uncertain",
    [(UncertainPolicy.ABSENT, False), (UncertainPolicy.PRESENT, True), (UncertainPolicy.NOT_MENTIONED, None)],
)
def test_labels_follow_the_uncertain_policy(roots, studies, policy, uncertain):
    study = next(s for s in studies if "-1.0" in chexpert_values(s.case, CHEXPERT_LABELS).values())
    values = chexpert_values(study.case, CHEXPERT_LABELS)
    labels = mimic_cxr.read(
        roots[Variant.CLEAN], ReaderOptions(uncertain=policy, image_check=ImageCheck.EXISTS)
    ).labels
    row = labels.filter(pl.col("study_id") == study.study_id).row(0, named=True)
    meaning = {"1.0": True, "0.0": False, "": None, "-1.0": uncertain}
    assert {name: row[name] for name in CHEXPERT_LABELS} == {
        name: meaning[values[name]] for name in CHEXPERT_LABELS
    }
    assert row["split"] == study.split and row["image_id"] is None


def test_reports_take_findings_else_impression_else_last_paragraph(clean, roots):
    reports = clean.reports
    with_findings = reports.filter(pl.col("findings").is_not_null())
    assert with_findings.height and (with_findings["report"] == with_findings["findings"]).all()
    impression_only = reports.filter(pl.col("findings").is_null() & pl.col("impression").is_not_null())
    assert impression_only.height and (impression_only["report"] == impression_only["impression"]).all()
    headless = reports.filter(pl.col("findings").is_null() & pl.col("impression").is_null())
    assert headless.height
    path = headless.item(0, "path")
    text = (roots[Variant.CLEAN] / "mimic-cxr" / path).read_text()
    last_paragraph = " ".join(text.split(" COMPARISON:")[1].split("\n \n", 1)[1].split())
    assert headless.item(0, "report") == last_paragraph
    assert reports["report"].str.contains("___").sum() == 0  # de-identified header lines stay out of the text
    assert reports["report"].str.contains("\n").sum() == 0


REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)
 
 INDICATION:  ___F with cough  // eval for pneumonia
 
 COMPARISON:  ___.
 
 FINDINGS: 
 
 
 CHEST, PA AND LATERAL:  The heart is mildly enlarged.  There is a small right
 pleural effusion.
 
 CONCLUSION: 
 
 Small right effusion.
"""


def test_sectioning_follows_the_mit_lcp_rules():
    names = [name for name, _ in mimic_reports.split_sections(REPORT)]
    # the empty FINDINGS section is dropped, the view header counts as findings, CONCLUSION as impression
    assert names == ["preamble", "examination", "indication", "comparison", "findings", "impression"]
    parsed = mimic_reports.parse_report(REPORT)
    assert parsed.findings == "The heart is mildly enlarged. There is a small right pleural effusion."
    assert parsed.impression == "Small right effusion."
    assert parsed.report == parsed.findings
    headless = "                                 FINAL REPORT\n PORTABLE CHEST\n \n Lungs are clear.\n \n No effusion.\n"
    assert mimic_reports.parse_report(headless).report == "Lungs are clear. No effusion."
    assert mimic_reports.parse_report("                                 FINAL REPORT\n \n").report is None


def test_dirty_sample_quarantines_each_fault_where_it_was_put(dirty):
    invalid = {
        (f, r): reason
        for f, r, reason in dirty.quarantine.filter(pl.col("kind") == "invalid")
        .select("file", "row", "reason")
        .iter_rows()
    }
    expected = {(fault.file, fault.row): fault.reason for fault in mimic.faults(SEED)["mimic_cxr"].values()}
    assert invalid == expected
    details = dict(dirty.quarantine.select("reason", "detail").iter_rows())
    assert details["missing_split"].startswith("no row for dicom_id")
    assert "Edema='2.0'" in details["unknown_label_value"]
    assert all("/tmp" not in detail for detail in dirty.quarantine["detail"])  # paths in details are relative


def test_dirt_removes_only_the_faulty_rows(clean, dirty):
    faults = mimic.faults(SEED)["mimic_cxr"]
    assert dirty.images.equals(clean.images)
    empty = faults["empty_report"].file
    assert dirty.reports.equals(clean.reports.filter(pl.col("path") != empty))
    unknown_study = clean.labels.row(faults["unknown_label_value"].row - 1, named=True)["study_id"]
    assert dirty.labels.equals(clean.labels.filter(pl.col("study_id") != unknown_study))


@pytest.mark.parametrize("which", ["clean", "dirty"])
def test_every_row_is_accounted_for_and_no_patient_leaks(request, which):
    tables = request.getfixturevalue(which)
    assert checks.accounting_problems(tables.accounting, tables.quarantine) == []
    assert checks.split_leak_problems(tables.images) == []
    files = dict(tables.accounting.select("file", "rows_in").iter_rows())
    assert (
        files["mimic-cxr-2.0.0-metadata.csv.gz"]
        == tables.images.height
        + tables.quarantine.filter(pl.col("file") == "mimic-cxr-2.0.0-metadata.csv.gz").height
    )


def test_existence_check_trusts_the_metadata(roots):
    tables = mimic_cxr.read(roots[Variant.DIRTY], ReaderOptions(image_check=ImageCheck.EXISTS))
    reasons = set(tables.quarantine["reason"])
    assert "missing_image" in reasons
    assert (
        not {"unreadable_image", "image_size_mismatch"} & reasons
    )  # neither is seen without opening the file


def test_a_blank_size_is_measured_on_the_jpeg(tmp_path, roots, clean):
    shutil.copytree(roots[Variant.CLEAN] / "mimic-cxr", tmp_path / "mimic-cxr")
    path = tmp_path / "mimic-cxr" / writer.METADATA_FILE
    metadata = pl.read_csv(path, infer_schema=False)
    assert metadata.item(0, "dicom_id") in clean.images["image_id"].to_list()  # a kept frontal image
    blank_first = pl.when(pl.int_range(pl.len()) == 0).then(None)
    metadata.with_columns(
        blank_first.otherwise("Rows").alias("Rows"),
        blank_first.otherwise("Columns").alias("Columns"),
    ).write_csv(path.with_suffix(""))  # the reader takes the unpacked .csv as well
    path.unlink()
    tables = mimic_cxr.read(tmp_path, ReaderOptions())
    assert tables.images.equals(clean.images)
    with pytest.raises(DatasetUnavailable, match="cannot read"):  # an unreadable table is a layout problem
        path.with_suffix("").write_bytes(b"\x1f\x8b broken")
        mimic_cxr.read(tmp_path, ReaderOptions(image_check=ImageCheck.EXISTS))


def test_same_seed_writes_the_same_bytes(tmp_path, roots):
    mimic.write(tmp_path, SEED, Variant.DIRTY)
    assert folder_digests(tmp_path) == folder_digests(roots[Variant.DIRTY])
    header = (tmp_path / "mimic-cxr" / writer.METADATA_FILE).read_bytes()[:10]
    assert header[3] & 0x08 == 0 and header[4:8] == b"\0\0\0\0"  # no file name, no timestamp


def test_release_tables_are_gzipped_csv_with_the_release_columns(roots):
    folder = roots[Variant.CLEAN] / "mimic-cxr"
    for name, columns in (
        (writer.METADATA_FILE, writer.METADATA_COLUMNS),
        (writer.SPLIT_FILE, writer.SPLIT_COLUMNS),
        (writer.CHEXPERT_FILE, writer.CHEXPERT_COLUMNS),
    ):
        with gzip.open(folder / name, "rt") as text:
            assert text.readline().rstrip("\n").split(",") == list(columns)


def test_missing_folder_or_file_is_reported_by_name(tmp_path, roots):
    with pytest.raises(DatasetUnavailable, match="mimic-cxr"):
        mimic_cxr.read(tmp_path, ReaderOptions())
    shutil.copytree(
        roots[Variant.CLEAN] / "mimic-cxr", tmp_path / "mimic-cxr", ignore=shutil.ignore_patterns("files")
    )
    (tmp_path / "mimic-cxr" / writer.SPLIT_FILE).unlink()
    with pytest.raises(DatasetUnavailable, match="mimic-cxr-2.0.0-split.csv"):
        mimic_cxr.read(tmp_path, ReaderOptions())


def test_scale_mode_writes_paper_proportions_quickly(tmp_path):
    counts = mimic.write_scale(tmp_path, SEED, studies=3_000)
    assert counts["mimic_cxr"]["studies"] == 3_000
    assert 1.4 < counts["mimic_cxr"]["images"] / 3_000 < 1.9
    assert not (tmp_path / "mimic-cxr" / "files").exists()
    tables = mimic_cxr.read(tmp_path, ReaderOptions(image_check=ImageCheck.EXISTS))
    assert tables.images.is_empty()  # no pixels: every frontal row is quarantined as a missing image
    assert set(tables.quarantine["reason"]) == {"lateral_view", "missing_image", "no_usable_image"}
    assert checks.accounting_problems(tables.accounting, tables.quarantine) == []
    splits = pl.read_csv(
        tmp_path / "mimic-cxr" / writer.SPLIT_FILE, schema_overrides={"subject_id": pl.String}
    )
    assert (
        splits.group_by("subject_id").agg(pl.col("split").n_unique()).filter(pl.col("split") > 1).is_empty()
    )
