"""CPU cost of a demo fine-tune: the tiny LLaVA-OneVision, the real training script, one process.

    .venv/bin/python benchmarks/cpu_finetune_demo.py [--rows 120]

Prints the fixed cost (model and processor load, final save) and the per-step cost at micro-batch 1,
from which a demo's duration on a corpus of N rows is about fixed + N x per-step (plus ~5 s to start
the training process when Dagster launches it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from radvlm_pipeline.training.config import TrainConfig  # noqa: E402
from radvlm_pipeline.training.synthetic import write_corpus  # noqa: E402
from radvlm_pipeline.training.tiny_model import build_model_directory  # noqa: E402
from radvlm_pipeline.training.train import train  # noqa: E402

SAMPLES = [
    (
        "report_generation",
        "mimic_cxr",
        "mimic_cxr",
        [("Write the findings.", "The heart size is normal. The lungs are clear.")],
    ),
    (
        "classification",
        "chexpert",
        "chexpert",
        [("Which abnormalities are present?", "Cardiomegaly, Edema.")],
    ),
    (
        "conversation",
        "mimic_cxr",
        "mimic_cxr",
        [("What view is this?", "A frontal PA view."), ("Effusion?", "Yes, on the left.")],
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        model = build_model_directory(work / "model")
        build_s = time.perf_counter() - started
        files = write_corpus(work / "storage", work / "data", SAMPLES, repeat=args.rows // len(SAMPLES))
        config = TrainConfig(
            model_path=str(model),
            output_dir=str(work / "run"),
            shard_files=[str(f) for f in files],
            data_root=str(work / "data"),
            storage_root=str(work / "storage"),
        )
        started = time.perf_counter()
        summary = train(config)
        call_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "tiny_model_build_s": round(build_s, 2),
                "steps": summary["steps"],
                "training_loop_s": round(summary["wall_time_s"], 2),
                "per_step_ms": round(1000 * summary["wall_time_s"] / summary["steps"], 1),
                "fixed_s": round(call_s - summary["wall_time_s"], 2),
                "tokens_per_s": round(summary["tokens_per_s"]),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
