"""GPU check of the real training script: a 0.5B-shaped LLaVA-OneVision (random weights, the dimensions of
llava-onevision-qwen2-0.5b) trains in bf16 with gradient checkpointing on synthetic CXR-sized rows.

Reports tokens/s and MFU. MFU counts model FLOPs only (6 x parameters x tokens for forward + backward;
the recomputation of gradient checkpointing and attention's sequence-length term are not counted),
split between the language model (every sequence position) and the vision encoder (every patch of
every anyres tile), against the GPU's dense bf16 peak.

    python benchmarks/gpu_finetune_check.py --work /tmp/gpu-check --steps 150 --out result.json
    python benchmarks/gpu_finetune_check.py --shape tiny --steps 5 ...   # CPU dry run of this script
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}  # dense, SXM parts

REPORT = (
    "The heart size is normal. The mediastinal and hilar contours are within normal limits. There is a small "
    "left pleural effusion with adjacent atelectasis. No pneumothorax. Mild pulmonary vascular congestion "
    "without frank edema. Degenerative changes of the thoracic spine. A right internal jugular central venous "
    "catheter terminates in the lower superior vena cava. No focal consolidation to suggest pneumonia."
)
SAMPLES = [
    (
        "report_generation",
        "mimic_cxr",
        "mimic_cxr",
        [("Write the findings section for this chest X-ray.", REPORT)],
    ),
    (
        "conversation",
        "mimic_cxr",
        "mimic_cxr",
        [
            ("Is there a pleural effusion?", "Yes, a small left pleural effusion with adjacent atelectasis."),
            ("Where is it located?", "At the left lung base, [0.55, 0.62, 0.93, 0.95]."),
            (
                "Any lines or tubes?",
                "A right internal jugular central venous catheter ending in the lower SVC.",
            ),
        ],
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--shape", default="0.5b", choices=["0.5b", "tiny"])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument(
        "--image-size", type=int, default=512, help="square images; 512 px gives 2x2 anyres tiles"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch

    from radvlm_pipeline.images import open_rgb
    from radvlm_pipeline.layout import RunLayout, image_root
    from radvlm_pipeline.training.config import TrainConfig
    from radvlm_pipeline.training.data import load_training_rows
    from radvlm_pipeline.training.processing import collate, load_processor
    from radvlm_pipeline.training.report import read_metrics
    from radvlm_pipeline.training.synthetic import write_corpus
    from radvlm_pipeline.training.tiny_model import build_model_directory
    from radvlm_pipeline.training.train import train

    started = time.perf_counter()
    model_dir = args.work / f"model-{args.shape}"
    if not (model_dir / "radvlm_build.json").exists():
        build_model_directory(model_dir, args.shape)
    built_s = time.perf_counter() - started
    storage, data = args.work / "storage", args.work / "data"
    rows_needed = args.steps * args.micro_batch_size
    files = write_corpus(
        storage,
        data,
        SAMPLES * 32,
        repeat=rows_needed // (len(SAMPLES) * 32) + 1,
        image_size=(args.image_size, args.image_size),
    )
    config = TrainConfig(
        model_path=str(model_dir),
        output_dir=str(args.work / "run"),
        shard_files=[str(f) for f in files],
        data_root=str(data),
        storage_root=str(storage),
        micro_batch_size=args.micro_batch_size,
        max_steps=args.steps,
        save_every_steps=10**9,
        num_workers=4,
        log_every_steps=10,
    )
    summary = train(config)
    metrics = read_metrics(RunLayout(args.work / "run").metrics)

    # Sequence length and vision patches per sample, from one real batch of this data.
    processor = load_processor(model_dir)
    rows = load_training_rows(config.shard_files)[: args.micro_batch_size]
    images = [
        open_rgb(image_root(d, data, storage) / p) for d, p in zip(rows["image_dataset"], rows["image_path"])
    ]
    batch = collate(processor, rows["conversation"].to_list(), images, config.max_length)
    tokens_per_sample = float(batch["attention_mask"].sum()) / len(images)
    model_config = json.loads((model_dir / "config.json").read_text())
    vision = model_config["vision_config"]
    patches_per_tile = (vision["image_size"] // vision["patch_size"]) ** 2
    tiles_per_sample = batch["pixel_values"].shape[1]

    from safetensors import safe_open

    counts = {"vision": 0, "language": 0}
    for weights in model_dir.glob("*.safetensors"):
        with safe_open(weights, "pt") as handle:
            for name in handle.keys():
                size = handle.get_slice(name).get_shape()
                counts["vision" if "vision_tower" in name else "language"] += int(torch.tensor(size).prod())

    steady = (
        metrics[len(metrics) // 5 :] or metrics
    )  # leave out the first fifth (warm-up, compilation of kernels)
    seconds = steady[-1]["wall_s"] - (metrics[len(metrics) // 5 - 1]["wall_s"] if len(metrics) >= 5 else 0.0)
    steps = steady[-1]["step"] - (metrics[len(metrics) // 5 - 1]["step"] if len(metrics) >= 5 else 0)
    samples_per_s = steps * args.micro_batch_size / seconds
    tokens_per_s = samples_per_s * tokens_per_sample
    flops_per_s = (
        6
        * samples_per_s
        * (counts["language"] * tokens_per_sample + counts["vision"] * patches_per_tile * tiles_per_sample)
    )
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in device), None)
    import transformers

    result = {
        "device": device,
        "shape": args.shape,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "parameters": counts,
        "micro_batch_size": args.micro_batch_size,
        "image_size": args.image_size,
        "tokens_per_sample": tokens_per_sample,
        "anyres_tiles_per_sample": tiles_per_sample,
        "steps": summary["steps"],
        "steady_state_steps": steps,
        "steady_state_seconds": seconds,
        "samples_per_s": samples_per_s,
        "tokens_per_s": tokens_per_s,
        "model_flops_per_s": flops_per_s,
        "mfu": flops_per_s / peak if peak else None,
        "mfu_note": None if peak else f"no bf16 peak known for {device!r}",
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "first_loss": metrics[0]["loss"],
        "final_loss": summary["final_loss"],
        "model_build_s": built_s,
        "total_wall_s": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
