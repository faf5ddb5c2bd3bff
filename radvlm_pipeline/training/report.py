"""What a finished run looks like to a person: its loss curve, from metrics.jsonl."""

from __future__ import annotations

import io
import json
from pathlib import Path


def read_metrics(metrics_path: Path) -> list[dict]:
    if not metrics_path.exists():
        return []
    return [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]


def loss_curve_png(metrics: list[dict], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display on training or orchestration hosts
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.2), dpi=100)
    axis.plot([m["step"] for m in metrics], [m["loss"] for m in metrics], color="#0074d9")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss (assistant tokens)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
