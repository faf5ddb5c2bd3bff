"""Release fingerprint of a dataset folder of a million files: the cost of one ``dataset_releases`` check.

    .venv/bin/python benchmarks/fingerprint_walk.py [--work /tmp/fingerprint-walk] [--files 1000000] [--keep]

Writes a MIMIC-CXR-like tree (patient groups / patients / studies, each study a report beside a folder of
nine images; empty files, as only ``stat`` is timed), drops the page cache where allowed, then times
``releases.walk_digest`` cold and warm (target: <= 10 s for 1M files), and the content hash on a sample of
files. Creating the tree takes about a minute; ``--keep`` leaves it for a rerun.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from radvlm_pipeline.releases import walk_digest  # noqa: E402

FILES_PER_STUDY = 10  # a report and nine images
STUDIES_PER_PATIENT = 10
PATIENTS_PER_GROUP = 100


def write_tree(root: Path, files: int) -> int:
    written = 0
    study = 0
    while written < files:
        patient = study // STUDIES_PER_PATIENT
        folder = root / f"p{patient // PATIENTS_PER_GROUP:02d}" / f"p{patient:08d}" / f"s{study:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        folder.with_suffix(".txt").write_text("FINDINGS: none.\n")
        for image in range(FILES_PER_STUDY - 1):
            (folder / f"{image:040x}.jpg").touch()
        written += FILES_PER_STUDY
        study += 1
    return written


def drop_page_cache() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(folder: Path, by_content: bool = False) -> tuple[float, int]:
    start = time.perf_counter()
    _, count = walk_digest(folder, by_content)
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fingerprint-walk"))
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    tree = args.work / "mimic-cxr"
    if not tree.is_dir():
        start = time.perf_counter()
        print(f"wrote {write_tree(tree, args.files):,} files in {time.perf_counter() - start:.0f} s")
    cold = drop_page_cache()
    first, count = timed(tree)
    warm = min(timed(tree)[0] for _ in range(3))
    sample = tree / "p00" / "p00000000"
    content, sampled = timed(sample, by_content=True)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"files: {count:,}")
    print(f"first walk ({'cold page cache' if cold else 'page cache not dropped'}): {first:.2f} s")
    print(f"warm walk (best of 3): {warm:.2f} s")
    print(f"content hash of {sampled:,} empty files: {content:.3f} s")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(args.work)], check=True)


if __name__ == "__main__":
    main()
