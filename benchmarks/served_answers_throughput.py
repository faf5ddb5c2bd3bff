"""Throughput of served evaluation answers against a local OpenAI-compatible vision server with 200 ms latency.

Each level hands ``concurrency x ROUNDS`` distinct requests (one chest-X-ray-sized JPEG each, a question)
to ``ServedAnswers.answer``, the eval_answers served backend: the real ``openai`` SDK, the LLM client's
concurrency bound and retries, every answer written to a fresh SQLite cache. The server
(``tests/fake_vision_server.py``, in its own process) opens every image it receives before answering.
Both image transports are measured: base64 data URLs (the client reads and encodes each image, the
server decodes it) and file URLs (the server reads the file). Requests per second are reported as a
fraction of the ideal, ``concurrency / latency``.

    .venv/bin/python benchmarks/served_answers_throughput.py [--levels 1 16 64] [--rounds 10] [--side 1024]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from radvlm_pipeline.evaluation.baselines import recipe_adapters  # noqa: E402
from radvlm_pipeline.evaluation.generation import Request  # noqa: E402
from radvlm_pipeline.evaluation.served_answers import ServedAnswers, answer_settings  # noqa: E402
from radvlm_pipeline.launch.serving import ServedEndpoint  # noqa: E402
from radvlm_pipeline.llm import LLMSettings  # noqa: E402
from radvlm_pipeline.llm.images import DATA_URL, FILE_URL  # noqa: E402
from radvlm_pipeline.markdown import markdown_row, markdown_table  # noqa: E402

LATENCY_S = 0.2
MODEL = "radvlm-all-benchmark"
HEADER = ["transport", "concurrency", "requests", "seconds", "requests/s", "ideal/s", "fraction of ideal"]
HEADER += ["client CPU ms/request", "server CPU ms/request"]
SERVER = """
import sys, time
from pathlib import Path
sys.path[:0] = sys.argv[4:]
from fake_vision_server import FakeVisionServer
with FakeVisionServer(sys.argv[2], media_root=Path(sys.argv[3]), latency_s=float(sys.argv[1])) as server:
    print(server.port, flush=True)
    while True:
        time.sleep(3600)
"""


def write_images(folder: Path, count: int, side: int) -> list[Path]:
    """Smooth gradients with noise, as JPEG: about the bytes per pixel of a chest X-ray JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, side, dtype=np.float32)
    paths = []
    for index in range(count):
        pixels = ramp[None, :] * 0.5 + ramp[:, None] * 0.5 + rng.normal(0, 12, (side, side))
        path = folder / f"{index:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    base_url: str, transport: str, concurrency: int, images: list[Path], rounds: int
) -> tuple[int, float, float]:
    adapter = recipe_adapters()["all"]
    count = concurrency * rounds
    requests = [
        Request(
            "report_generation",
            images[n % len(images)],
            f"Question {n}: write the report.",
            datasets=("mimic_cxr",),
        )
        for n in range(count)
    ]
    base = LLMSettings(
        backend="openai",
        concurrency=concurrency,
        image_transport=transport,
        approved_credentialed_datasets=("mimic_cxr",),
    )
    settings = answer_settings(base, ServedEndpoint(base_url, MODEL), max_new_tokens=256)
    with tempfile.TemporaryDirectory() as tmp:
        generator = ServedAnswers(adapter, settings, Path(tmp) / "cache.sqlite")
        started, cpu = time.perf_counter(), time.process_time()
        generator.answer(requests)  # raises if any request failed
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return count, elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=10, help="requests per level = concurrency x rounds")
    parser.add_argument("--side", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--transports", nargs="+", default=[DATA_URL, FILE_URL])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as media:
        images = write_images(Path(media), 64, args.side)
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(LATENCY_S), MODEL, media, str(ROOT), str(ROOT / "tests")],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            base_url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
            kib = sum(p.stat().st_size for p in images) / len(images) / 1024
            print(
                f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
                f"Python {platform.python_version()}; date: {date.today()}; latency {LATENCY_S * 1000:.0f} ms; "
                f"images {args.side}x{args.side} JPEG, {kib:.0f} KiB on average"
            )
            print(markdown_table(HEADER, []))
            for transport in args.transports:
                for concurrency in args.levels:
                    server_cpu = process_cpu_s(server.pid)
                    count, elapsed, client_cpu = measure(
                        base_url, transport, concurrency, images, args.rounds
                    )
                    server_cpu = process_cpu_s(server.pid) - server_cpu
                    rate, ideal = count / elapsed, concurrency / LATENCY_S
                    row = [
                        transport,
                        concurrency,
                        count,
                        f"{elapsed:.2f}",
                        f"{rate:.1f}",
                        f"{ideal:.1f}",
                        f"{rate / ideal:.1%}",
                        f"{client_cpu / count * 1000:.1f}",
                        f"{server_cpu / count * 1000:.1f}",
                    ]
                    print(markdown_row(row), flush=True)
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
