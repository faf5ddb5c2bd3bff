"""Where the data lives and where outputs go.

One data root holds the seven datasets side by side (one folder each, see ``datasets.py``); one
storage root holds everything the pipeline writes. Both come from environment variables so the same
code runs on the bundled sample, on a workstation with the real datasets and on a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DATA_ROOT_ENV = "RADVLM_DATA_ROOT"
STORAGE_ROOT_ENV = "RADVLM_STORAGE_ROOT"

BUNDLED_SAMPLE_ROOT = PROJECT_ROOT / "data" / "sample"
DEFAULT_STORAGE_ROOT = PROJECT_ROOT / "storage"


def data_root() -> Path:
    return Path(os.environ.get(DATA_ROOT_ENV) or BUNDLED_SAMPLE_ROOT)


def storage_root() -> Path:
    return Path(os.environ.get(STORAGE_ROOT_ENV) or DEFAULT_STORAGE_ROOT)
