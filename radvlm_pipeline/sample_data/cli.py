"""``python -m radvlm_pipeline.sample_data``: write the synthetic sample of all seven datasets."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from radvlm_pipeline.sample_data import chexpert, mimic, padchest, vindr
from radvlm_pipeline.sample_data.common import Variant

# Each family writes its datasets' folders under the output root; MIMIC-CXR, Chest ImaGenome and MS-CXR
# are one family because the latter two refer to MIMIC-CXR images, as in reality.
FAMILIES = (mimic, chexpert, vindr, padchest)


def generate(out_root: Path, seed: int = 0, variant: Variant = Variant.CLEAN) -> dict[str, dict[str, int]]:
    """Write the sample with pixels; returns row/file counts per dataset."""
    counts: dict[str, dict[str, int]] = {}
    for family in FAMILIES:
        counts.update(family.write(out_root, seed, variant))
    return counts


def generate_scale(out_root: Path, seed: int = 0, studies: int = 400_000) -> dict[str, dict[str, int]]:
    """Metadata only (no pixels, no report files where the release keeps them apart) at paper scale."""
    counts: dict[str, dict[str, int]] = {}
    for family in FAMILIES:
        counts.update(family.write_scale(out_root, seed, studies))
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
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
    parser.add_argument(
        "--scale",
        type=int,
        metavar="STUDIES",
        help="write metadata only for about this many MIMIC-CXR studies (benchmarks)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        if not args.force:
            parser.error(f"{args.out} is not empty; pass --force to replace it")
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.scale:
        counts = generate_scale(args.out, args.seed, args.scale)
    else:
        counts = generate(args.out, args.seed, Variant(args.variant))
    print(json.dumps(counts, indent=2, sort_keys=True))
