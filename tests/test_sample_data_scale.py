"""The paper-scale data root with files (``--fraction``): the same bytes for a seed whatever the number of
processes, a stopped run finished by running the command again, and every reader reading it with nothing
quarantined but what the paper filters out."""

from __future__ import annotations

import json
import os

import pytest
from sample_digests import folder_digests

from radvlm_pipeline.images import ImageCheck
from radvlm_pipeline.sample_data.cli import PAPER_SCALE_MARKER, fraction_studies, generate_scale, main
from radvlm_pipeline.sample_data.files import PARTIAL
from radvlm_pipeline.sources.base import ReaderOptions
from radvlm_pipeline.sources.checks import accounting_problems
from radvlm_pipeline.sources.registry import READERS

SEED = 0
FRACTION = "0.0015"  # 342 MIMIC-CXR studies, ~2,700 files


def written(capsys) -> dict:
    """The counts ``main`` printed (JSON, then a line with the time)."""
    return json.loads(capsys.readouterr().out.rsplit("written in", 1)[0])


def test_same_bytes_whatever_the_processes_and_a_stopped_run_resumes(tmp_path, capsys):
    studies = fraction_studies(float(FRACTION))
    generate_scale(tmp_path / "serial", SEED, studies, files=True, workers=1)
    main(["--out", str(tmp_path / "root"), "--fraction", FRACTION, "--workers", "2"])
    first = written(capsys)["files_written"]
    reference = folder_digests(tmp_path / "root")
    assert reference == {
        **folder_digests(tmp_path / "serial"),
        PAPER_SCALE_MARKER: reference[PAPER_SCALE_MARKER],
    }
    assert first["vindr_cxr DICOMs"] > 0 and first["padchest_gr images"] > 0

    # A run stopped midway: some files never written, one left half-written under its temporary name.
    root = tmp_path / "root"
    lost = [
        next(root.glob("mimic-cxr/files/p*/p*/s*.txt")),
        next(root.glob("mimic-cxr/files/p*/p*/s*/*.jpg")),
        next(root.glob("chest-imagenome/silver_dataset/scene_graph/*.json")),
        next(root.glob("chexpert-plus/PNG/train/*/*/*.png")),
        next(root.glob("vindr-cxr/train/*.dicom")),
    ]
    for path in lost:
        path.unlink()
    lost[0].with_name(lost[0].name + PARTIAL).write_text("half a rep")
    table = root / "mimic-cxr" / "mimic-cxr-2.0.0-metadata.csv.gz"
    table_mtime = table.stat().st_mtime_ns

    main(["--out", str(root), "--fraction", FRACTION])
    assert sum(written(capsys)["files_written"].values()) == len(lost)
    assert folder_digests(root) == reference  # the partial file was replaced, nothing else touched
    assert table.stat().st_mtime_ns == table_mtime  # so the release sensor sees no new release

    with pytest.raises(SystemExit):  # another seed is not a resume
        main(["--out", str(root), "--fraction", FRACTION, "--seed", "1"])
    assert folder_digests(root) == reference


def test_every_reader_reads_it_and_quarantines_only_what_the_paper_filters(tmp_path):
    counts = generate_scale(tmp_path, SEED, fraction_studies(0.001), files=True, workers=os.cpu_count())
    options = ReaderOptions(image_check=ImageCheck.DECODE, storage_root=tmp_path / "storage")
    images = {}
    for key, reader in READERS.items():
        tables = reader.read(tmp_path, options, {source: images[source] for source in reader.UPSTREAM})
        images[key] = tables.images
        assert set(tables.quarantine["reason"]) <= {"lateral_view"}, key
        assert accounting_problems(tables.accounting, tables.quarantine) == [], key
        assert tables.images.height > 0, key
    assert counts["mimic_cxr"]["reports"] == counts["mimic_cxr"]["studies"]
    assert images["chest_imagenome"].height == counts["chest_imagenome"]["scene_graphs"]


def test_a_later_mimic_release_writes_only_its_new_studies(tmp_path, capsys):
    root = tmp_path / "root"
    main(["--out", str(root), "--fraction", FRACTION])
    capsys.readouterr()
    before = folder_digests(root)

    main(["--out", str(root), "--fraction", FRACTION, "--later-mimic-studies", "12"])
    counts = written(capsys)
    after = folder_digests(root)
    changed = {path for path in before if after[path] != before[path]}
    added = set(after) - set(before)
    assert changed == {
        f"mimic-cxr/mimic-cxr-2.0.0-{name}.csv.gz" for name in ("metadata", "split", "chexpert")
    }
    assert counts["mimic_cxr"]["studies"] == fraction_studies(float(FRACTION)) + 12
    assert {path.rsplit(".", 1)[1] for path in added} == {"txt", "jpg"}  # no scene graph: not in ImaGenome
    assert sum(path.endswith(".txt") for path in added) == 12
    assert sum(counts["files_written"].values()) == len(added)
    assert all(path.startswith("mimic-cxr/files/p2") for path in added)  # new patients, numbered apart
