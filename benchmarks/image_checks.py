"""What each image check level costs and catches on full-size images, and the real datasets' check time.

    .venv/bin/python benchmarks/image_checks.py [--seconds 4] [--repeats 7]

1. Full-size synthetic images in the real formats (a MIMIC-CXR-JPG-size JPEG, a CheXpert-small JPEG, a
   CheXpert-Plus/PadChest-size 16-bit PNG, a VinDr-CXR converted 8-bit PNG), with fine noise so they
   compress like radiographs: milliseconds per image per level in one process (best of ``--repeats``,
   which is what the image costs on an idle core; the median shows the load).
2. What each level catches on them: cut in half, the last 2 KiB cut, 8 bytes flipped mid-file.
3. ``check_images`` over hard links of each image (about ``--seconds`` of work in one process), in one
   process and in the pool sized from the usable cores: images/s and the speed-up the pool gets here.
4. The real datasets' check time at each level, for one pass before this change (reader, then the
   ``images_decode`` checks again, Chest ImaGenome and MS-CXR again on MIMIC-CXR's images) and after it
   (reader only; checks and the annotating sources reuse its verdicts), on 2 and on 32 cores assuming the
   pool scales with cores (measured here up to 2).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from radvlm_pipeline.images import ImageCheck, ImageProblem, check_image, check_images, usable_cores  # noqa: E402
from radvlm_pipeline.markdown import markdown_table  # noqa: E402
from radvlm_pipeline.sample_data.common import render_radiograph, rng_for, sample_case  # noqa: E402

# (name, width, height, bits, format): sizes of the releases' typical images.
FORMATS = (
    ("MIMIC-CXR-JPG JPEG", 2544, 3056, 8, "JPEG"),
    ("CheXpert-small JPEG", 320, 390, 8, "JPEG"),
    ("CheXpert-Plus / PadChest 16-bit PNG", 2320, 2828, 16, "PNG"),
    ("VinDr-CXR converted PNG", 852, 1024, 8, "PNG"),
)
# Images each dataset's reader checks (frontal ones) at the real size, by format above.
REAL = (
    ("MIMIC-CXR", 243_300, "MIMIC-CXR-JPG JPEG"),
    ("CheXpert", 191_200, "CheXpert-small JPEG"),
    ("CheXpert-Plus", 191_200, "CheXpert-Plus / PadChest 16-bit PNG"),
    ("PadChest-GR", 4_555, "CheXpert-Plus / PadChest 16-bit PNG"),
)
# Checked again before this change: each source's images_decode check over its images table, and the
# checks of the sources on MIMIC-CXR's images (Chest ImaGenome 242,072, MS-CXR 1,162); VinDr-CXR's
# converted PNGs (18,000) are checked by its images_decode only.
CHECKED_AGAIN = (
    *REAL,
    ("Chest ImaGenome (MIMIC-CXR images)", 242_072, "MIMIC-CXR-JPG JPEG"),
    ("MS-CXR (MIMIC-CXR images)", 1_162, "MIMIC-CXR-JPG JPEG"),
    ("VinDr-CXR converted", 18_000, "VinDr-CXR converted PNG"),
)
LEVELS = (ImageCheck.HEADER, ImageCheck.COMPLETE, ImageCheck.VERIFY, ImageCheck.DECODE)


def write_images(folder: Path) -> dict[str, Path]:
    paths = {}
    for index, (name, width, height, bits, image_format) in enumerate(FORMATS):
        rng = rng_for(0, "image check benchmark", index)
        pixels = render_radiograph(sample_case(rng, lateral_fraction=0.0), width, height, rng)
        pixels = np.clip(pixels + rng.normal(0, 0.008, pixels.shape), 0, 1)  # detector noise
        array = np.round(pixels * (4095 if bits == 16 else 255)).astype(np.uint16 if bits == 16 else np.uint8)
        path = folder / f"{index}.{'jpg' if image_format == 'JPEG' else 'png'}"
        Image.fromarray(array).save(path, image_format, **({"quality": 95} if image_format == "JPEG" else {}))
        paths[name] = path
    return paths


def per_image_ms(path: Path, level: ImageCheck, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        check_image(path, level)
        times.append((time.perf_counter() - started) * 1000)
    return min(times), statistics.median(times)


def faults(path: Path, folder: Path) -> dict[str, Path]:
    data = path.read_bytes()
    middle = len(data) // 2
    made = {
        "cut in half": data[:middle],
        "last 2 KiB cut": data[:-2048],
        "8 bytes flipped mid-file": data[:middle]
        + bytes(b ^ 0x5A for b in data[middle : middle + 8])
        + data[middle + 8 :],
    }
    for fault, content in made.items():
        (folder / f"{path.stem} {fault}{path.suffix}").write_bytes(content)
    return {fault: folder / f"{path.stem} {fault}{path.suffix}" for fault in made}


def caught(path: Path, level: ImageCheck) -> bool:
    try:
        check_image(path, level)
    except ImageProblem:
        return True
    return False


def throughput(path: Path, folder: Path, copies: int, level: ImageCheck, pool: bool) -> float:
    """Images/s of ``check_images`` over hard links of one image (the page cache holds it: CPU cost),
    in one process or in the pool whatever the amount of work."""
    links = folder / f"links-{path.stem}"
    links.mkdir(exist_ok=True)
    names = []
    for index in range(copies):
        target = links / f"{index}{path.suffix}"
        if not target.exists():
            os.link(path, target)
        names.append(target.name)
    import radvlm_pipeline.images as images

    cores, after = images.usable_cores, images.POOL_AFTER_S
    images.usable_cores, images.POOL_AFTER_S = (cores, 0.0) if pool else (lambda: 1, after)
    try:
        started = time.perf_counter()
        check_images(links, names, level)
        return copies / (time.perf_counter() - started)
    finally:
        images.usable_cores, images.POOL_AFTER_S = cores, after


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="single-process work per throughput row")
    parser.add_argument("--max-copies", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_images(folder)
        sizes = {name: path.stat().st_size for name, path in paths.items()}
        cost = {}
        rows = []
        for name, path in paths.items():
            cells = [f"{name} ({sizes[name] / 1e6:.2f} MB)"]
            for level in LEVELS:
                best, median = per_image_ms(path, level, args.repeats)
                cost[name, level] = best
                cells.append(f"{best:.2f} ({median:.2f})")
            rows.append(cells)
        print(
            f"machine: {usable_cores()} usable cores, {platform.processor() or platform.machine()}, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print("\nms per image, one process, best (median) of", args.repeats)
        print(markdown_table(["image", *(level.value for level in LEVELS)], rows))

        rows = []
        for name in ("MIMIC-CXR-JPG JPEG", "CheXpert-Plus / PadChest 16-bit PNG"):
            for fault, path in faults(paths[name], folder).items():
                rows.append(
                    [name, fault, *("caught" if caught(path, level) else "missed" for level in LEVELS)]
                )
        print("\nwhat each level catches")
        print(markdown_table(["image", "fault", *(level.value for level in LEVELS)], rows))

        rows = []
        for name, path in paths.items():
            for level in (ImageCheck.COMPLETE, ImageCheck.VERIFY):
                copies = min(args.max_copies, max(200, round(args.seconds * 1000 / cost[name, level])))
                one = throughput(path, folder, copies, level, pool=False)
                many = throughput(path, folder, copies, level, pool=True)
                rows.append(
                    [name, level.value, f"{copies:,}", f"{one:,.0f}", f"{many:,.0f}", f"{many / one:.2f}"]
                )
        print("\ncheck_images: images/s (pool start-up included)")
        header = ["image", "level", "files", "1 process", f"pool of {usable_cores()}", "speed-up"]
        print(markdown_table(header, rows))

        def hours(datasets, level: ImageCheck, cores: int) -> float:
            return sum(count * cost[image, level] for _, count, image in datasets) / 1000 / 3600 / cores

        rows = []
        for level in LEVELS[1:]:
            for cores in (2, 32):
                rows.append(
                    [
                        level.value,
                        cores,
                        f"{hours(CHECKED_AGAIN, level, cores):.2f}",
                        f"{hours(REAL, level, cores):.2f}",
                    ]
                )
        print("\nreal datasets, hours per materialization of the seven sources (CPU time / cores)")
        print(markdown_table(["level", "cores", "before: reader + checks again", "after: one pass"], rows))


if __name__ == "__main__":
    main()
