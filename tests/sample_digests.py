"""What "writing twice gives identical bytes" compares: every file of a written dataset folder by content."""

import hashlib
from pathlib import Path


def folder_digests(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder``."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
