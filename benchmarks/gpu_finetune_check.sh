#!/usr/bin/env bash
# H200 check of the training script (run from the repository root on the GPU machine):
# a 0.5B-shaped LLaVA-OneVision trains ~1 minute in bf16; tokens/s and MFU land in $OUT (or ./benchmarks).
# Needs torch (CUDA), transformers (4.57 or 5.x), tokenizers, polars, pyarrow, pyyaml, pillow, numpy,
# safetensors; not deepspeed or dagster. Missing modules are listed before anything runs.
set -euo pipefail
python="${PYTHON:-python3}"
out_dir="${OUT:-benchmarks}"
work="${WORK:-/tmp/radvlm-gpu-check}"

"$python" - <<'PY'
import importlib.util, sys
missing = [m for m in ("torch", "transformers", "tokenizers", "polars", "pyarrow", "yaml", "PIL", "numpy", "safetensors")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python modules: {missing} (pip install them, e.g. from carried wheels)")
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$python" benchmarks/gpu_finetune_check.py --work "$work" --steps "${STEPS:-150}" \
  --micro-batch-size "${MICRO_BATCH_SIZE:-8}" --out "$out_dir/gpu_finetune_check.json"
