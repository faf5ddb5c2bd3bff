"""``python -m radvlm_pipeline.sample_data``: write the synthetic sample of all seven datasets.

Three sizes: the bundled sample (default; ``--variant dirty`` adds the faults readers must quarantine),
``--scale STUDIES`` (the tables only, at about that many MIMIC-CXR studies, for benchmarks) and
``--fraction F`` (every dataset at F times its released size, with every file the tables name: tiny
images in the real formats, report files, scene graphs; written by a process per core, and resumable:
run the same command again to finish a stopped run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from radvlm_pipeline.sample_data import chexpert, mimic, padchest, vindr
from radvlm_pipeline.sample_data.common import PAPER_MIMIC_STUDIES, Variant
from radvlm_pipeline.sample_data.files import FileJobs, write_table

# Each family writes its datasets' folders under the output root; MIMIC-CXR, Chest ImaGenome and MS-CXR
# are one family because the latter two refer to MIMIC-CXR images, as in reality. MIMIC-CXR's comes
# first: its tables can also be a later release.
FAMILIES = (mimic, chexpert, vindr, padchest)
# What a paper-scale root was written with; a resumed run must ask for the same.
PAPER_SCALE_MARKER = ".paper_scale.json"


def generate(out_root: Path, seed: int = 0, variant: Variant = Variant.CLEAN) -> dict[str, dict[str, int]]:
    """Write the sample with pixels; returns row/file counts per dataset."""
    counts: dict[str, dict[str, int]] = {}
    for family in FAMILIES:
        counts.update(family.write(out_root, seed, variant))
    return counts


def generate_scale(
    out_root: Path,
    seed: int = 0,
    studies: int = 400_000,
    files: bool = False,
    workers: int | None = None,
    later_mimic_studies: int = 0,
) -> dict[str, dict[str, int]]:
    """Tables at paper scale for about ``studies`` MIMIC-CXR studies; with ``files`` also every file they
    name, skipping those a stopped run completed (counts then hold ``files_written`` per kind, and the
    ``seconds`` the tables and the files took). ``later_mimic_studies`` makes it a later MIMIC-CXR
    release with that many more studies of new patients: on an existing root, only their files and the
    MIMIC-CXR tables are written."""
    started = time.perf_counter()
    jobs = FileJobs(out_root, seed) if files else None
    counts: dict[str, dict] = mimic.write_scale(out_root, seed, studies, jobs, later_mimic_studies)
    for family in FAMILIES[1:]:
        counts.update(family.write_scale(out_root, seed, studies, jobs))
    if jobs is not None:
        tables_done = time.perf_counter()
        counts["files_written"] = jobs.run(workers)
        counts["seconds"] = {
            "tables": round(tables_done - started, 1),
            "files": round(time.perf_counter() - tables_done, 1),
        }
    return counts


def fraction_studies(fraction: float) -> int:
    return max(1, round(PAPER_MIMIC_STUDIES * fraction))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="data root to write (dataset folders go inside)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variant",
        choices=[v.value for v in Variant],
        default=Variant.CLEAN.value,
        help="'dirty' adds the faults the readers must quarantine",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--scale",
        type=int,
        metavar="STUDIES",
        help="write metadata only for about this many MIMIC-CXR studies (benchmarks)",
    )
    size.add_argument(
        "--fraction",
        type=float,
        metavar="F",
        help="every dataset at F x its released size (1.0: ~1.3M files), with every file; resumable",
    )
    parser.add_argument(
        "--later-mimic-studies",
        type=int,
        default=0,
        metavar="N",
        help="with --fraction: a later MIMIC-CXR release adding N studies of new patients (rerun on an "
        "existing root to publish it: only the new files are written)",
    )
    parser.add_argument("--workers", type=int, help="processes writing files (default: one per core)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    marker = {"seed": args.seed, "fraction": args.fraction}
    if args.out.exists() and any(args.out.iterdir()) and not _resumes(args.out, marker, args.fraction):
        if not args.force:
            parser.error(f"{args.out} is not empty; pass --force to replace it")
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.fraction:
        write_table(args.out / PAPER_SCALE_MARKER, json.dumps(marker, sort_keys=True) + "\n")
        counts = generate_scale(
            args.out, args.seed, fraction_studies(args.fraction), True, args.workers, args.later_mimic_studies
        )
    elif args.scale:
        counts = generate_scale(args.out, args.seed, args.scale)
    else:
        counts = generate(args.out, args.seed, Variant(args.variant))
    print(json.dumps(counts, indent=2, sort_keys=True))
    print(f"written in {time.perf_counter() - started:.1f} s")


def _resumes(out: Path, marker: dict, fraction: float | None) -> bool:
    """A paper-scale root started with the same seed and fraction is finished, not replaced."""
    path = out / PAPER_SCALE_MARKER
    return bool(fraction) and path.is_file() and json.loads(path.read_text()) == marker
