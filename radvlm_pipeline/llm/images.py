"""Images in chat requests: named by their hash in the cache, read from disk only when a request is sent.

The messages a request is keyed and cached by name each image by the sha256 of its bytes (``image_part``):
the key then covers the pixels, answers survive a moved data root, and the cache never holds a copy of a
credentialed image. The file is read when the request goes out (``resolve_images``), either as a base64
data URL, which every OpenAI-compatible vision endpoint takes, or as a ``file://`` URL for a server that
reads the same filesystem (vLLM started with ``--allowed-local-media-path``), which spares encoding,
sending and decoding the bytes.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_URL = "data_url"
FILE_URL = "file_url"
IMAGE_TRANSPORTS = (DATA_URL, FILE_URL)
REFERENCE_PREFIX = "sha256:"


@dataclass(frozen=True)
class ImageInput:
    path: str
    sha256: str

    @classmethod
    def from_file(cls, path: Path | str) -> ImageInput:
        return cls(str(path), hashlib.sha256(Path(path).read_bytes()).hexdigest())

    @property
    def reference(self) -> str:
        """How the cached messages name this image."""
        return REFERENCE_PREFIX + self.sha256


def image_part(image: ImageInput) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": image.reference}}


def image_url(path: str, transport: str) -> str:
    if transport == FILE_URL:
        return Path(path).resolve().as_uri()
    if transport != DATA_URL:
        raise ValueError(f"unknown image transport {transport!r}; expected one of {IMAGE_TRANSPORTS}")
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def resolve_images(
    messages: Sequence[Mapping[str, Any]], paths: Mapping[str, str], transport: str
) -> list[Mapping[str, Any]]:
    """The messages as sent: every image reference replaced by the file's URL (``paths``: reference -> path)."""
    resolved = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            resolved.append(message)
            continue
        parts = [
            {"type": "image_url", "image_url": {"url": image_url(paths[part["image_url"]["url"]], transport)}}
            if part["type"] == "image_url"
            else part
            for part in content
        ]
        resolved.append({**message, "content": parts})
    return resolved


def text_characters(messages: Sequence[Mapping[str, Any]]) -> int:
    """Characters of text in the messages, images left out (a token estimate's input)."""
    total = 0
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            total += len(content)
        else:
            total += sum(len(part.get("text", "")) for part in content)
    return total
