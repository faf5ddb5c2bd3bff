"""Prompt templates kept as files in the repository, versioned by the hash of their bytes.

A prompt is part of the pipeline's logic: changing one word changes every output. Keeping each prompt in
its own file, and folding the file's hash into both the cache key and the asset's code version, means an
edited prompt is never served stale answers from the cache and shows the asset as changed in the UI.

File format: the system message, then a line ``--- user ---``, then the user message. The user message
may name fields as ``$name`` (``string.Template``), filled per item; every field must be given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from radvlm_pipeline.llm.images import ImageInput, image_part

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
USER_MARKER = "--- user ---"


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    system: str
    user: str
    version: str  # first 16 hex digits of the sha256 of the file

    @classmethod
    def from_file(cls, path: Path) -> PromptTemplate:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
        if USER_MARKER not in text:
            raise ValueError(f"prompt file {path} has no '{USER_MARKER}' line between system and user parts")
        system, user = text.split(USER_MARKER, 1)
        return cls(
            name=path.stem,
            system=system.strip(),
            user=user.strip(),
            version=hashlib.sha256(raw).hexdigest()[:16],
        )

    def messages(
        self,
        fields: Mapping[str, str],
        history: Sequence[tuple[str, str]] = (),
        images: Sequence[ImageInput] = (),
    ) -> list[dict[str, Any]]:
        """The chat messages for one item; raises KeyError naming a missing field.

        Earlier (user, assistant) turns come first, verbatim; the images open the first user turn, as a
        vision model is trained to see them. An empty system part sends no system message, so the
        server's chat template behaves as it does for the model's own evaluation."""
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system}] if self.system else []
        turns = [*history, (Template(self.user).substitute(fields), None)]
        for index, (asked, answered) in enumerate(turns):
            content: Any = asked
            if index == 0 and images:
                content = [*(image_part(image) for image in images), {"type": "text", "text": asked}]
            messages.append({"role": "user", "content": content})
            if answered is not None:
                messages.append({"role": "assistant", "content": answered})
        return messages


def load_prompt(name: str) -> PromptTemplate:
    """A prompt shipped with the package (``radvlm_pipeline/llm/prompts/<name>.md``)."""
    return PromptTemplate.from_file(PROMPTS_DIR / f"{name}.md")
