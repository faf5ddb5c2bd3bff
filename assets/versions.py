"""Code versions: a hash of the source files an asset's output depends on, so that editing one of them
marks the asset changed in the UI (and only then). Data versions: a hash of the files an asset wrote, so
that its dependents read as stale when its content changed (and only then), whatever caused the re-run."""

import hashlib
import inspect
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from dagster import DataVersion


def code_version(*sources: ModuleType | Path, extra: str = "", names: bool = False) -> str:
    """The first 16 hex digits of the SHA-256 of ``extra`` then of each source's bytes, in the order given.

    ``extra``: what the version depends on beyond files (a prompt's version). ``names``: each file's name
    counts too, for files found by a pattern, where a renamed file is a different one (DeepSpeed configs
    are chosen by name).
    """
    digest = hashlib.sha256(extra.encode())
    for source in sources:
        path = Path(inspect.getfile(source)) if isinstance(source, ModuleType) else source
        digest.update((path.name.encode() if names else b"") + path.read_bytes())
    return digest.hexdigest()[:16]


def project_modules(root: ModuleType) -> list[ModuleType]:
    """The module and every radvlm_pipeline module it uses, transitively (imports and from-imports)."""
    seen: dict[str, ModuleType] = {}
    pending = [root]
    while pending:
        module = pending.pop()
        if module.__name__ in seen:
            continue
        seen[module.__name__] = module
        for value in vars(module).values():
            used = (
                value
                if isinstance(value, ModuleType)
                else sys.modules.get(getattr(value, "__module__", "") or "")
            )
            if (
                used is not None
                and used.__name__.startswith("radvlm_pipeline.")
                and used.__name__ not in seen
            ):
                pending.append(used)
    return [seen[name] for name in sorted(seen)]


def files_data_version(paths: Iterable[Path]) -> DataVersion:
    """The first 16 hex digits of the SHA-256 over each written file's name and content, in name order.

    What an asset wrote, not how: a re-run that writes the same bytes keeps the version, so nothing
    downstream reads as stale. The writers keep bytes equal for equal content (no timestamps, sorted rows).
    """
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        with path.open("rb") as handle:
            digest.update(path.name.encode() + b"\0" + hashlib.file_digest(handle, "sha256").digest())
    return DataVersion(digest.hexdigest()[:16])
