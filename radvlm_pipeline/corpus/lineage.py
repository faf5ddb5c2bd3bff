"""What each corpus partition draws from its inputs, as one digest per partition.

A partition (Table 1 row) is rebuilt from its builder's samples, drawn from the source tables and LLM
outputs, minus the patients the evaluation sets hold. The digest covers exactly those samples and
patients, so it changes with them and only with them: a corrected report of another dataset or of a test
study, or a rewritten quarantine table, leaves it as it is. (A changed sample the cap then leaves out
still changes it: the rebuild writes the same rows, and the partition's own data version stays.) The
digests come from the builders themselves (``builders.BUILDERS``), so they cannot drift from what a
rebuild reads. They are taken with Table 1's settings (``CorpusConfig()``): a run configured with other
splits draws other samples, which these digests do not follow.

Rows are hashed one by one (polars ``hash_rows`` with a fixed seed, the same in every process) and the
sorted row hashes hashed again, so the digest does not depend on the order joins return rows in. A polars
upgrade may change row hashes: every partition then reads as changed once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from radvlm_pipeline.corpus.build import held_out_subjects
from radvlm_pipeline.corpus.builders import BUILDERS
from radvlm_pipeline.corpus.inputs import CorpusInputMissing, CorpusInputs
from radvlm_pipeline.corpus.table import CorpusConfig

_SEED = 0x52414456  # any fixed value: the same in every process
MISSING = "missing"


@dataclass(frozen=True)
class Draw:
    """What one partition draws now: ``version`` (a digest; ``missing:...`` when an input is not
    there yet), the number of samples and of held-out patients, and why it is missing, if it is."""

    partition: str
    version: str
    samples: int = 0
    held_out_patients: int = 0
    missing: str = ""


def frame_digest(frame: pl.DataFrame) -> str:
    """Order-free digest of a frame's rows and schema."""
    digest = hashlib.sha256(repr(list(frame.schema.items())).encode())
    if frame.height:
        digest.update(frame.hash_rows(seed=_SEED).sort().to_numpy().tobytes())
    return digest.hexdigest()


def draw(storage_root: Path, key: str, config: CorpusConfig | None = None) -> Draw:
    """The samples partition ``key`` would be built from now, and the patients it would leave out."""
    config = config or CorpusConfig()
    row = config.row(key)
    try:
        samples = BUILDERS[row.task](CorpusInputs(storage_root), row.source, row.splits)
        held_out = held_out_subjects(storage_root, row.source)
    except CorpusInputMissing as exc:
        reason = str(exc)
        return Draw(key, f"{MISSING}:{hashlib.sha256(reason.encode()).hexdigest()[:12]}", missing=reason)
    parts = [frame_digest(samples.frame), frame_digest(held_out)]
    if samples.options is not None:
        parts.append(frame_digest(samples.options.collect()))
    version = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return Draw(key, version, samples.frame.height, held_out.height)


def draws(storage_root: Path, config: CorpusConfig | None = None) -> dict[str, Draw]:
    """Every Table 1 row's draw, keyed by partition."""
    config = config or CorpusConfig()
    return {row.key: draw(storage_root, row.key, config) for row in config.rows}
