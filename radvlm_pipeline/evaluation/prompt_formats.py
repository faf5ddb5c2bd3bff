"""Prompt templates of the compared models, each as its authors recommend (paper section 4.3.1).

A template turns the conversation so far (question, the model's own answer) and the next question into
the text the model was trained to read, with the image where that model expects it.
"""

from __future__ import annotations

from collections.abc import Sequence


def chat_messages(history: Sequence[tuple[str, str]], question: str) -> list[dict]:
    """Chat-template messages with the image in the first user turn (as the corpus trains it)."""
    turns = [*history, (question, None)]
    messages = []
    for index, (asked, answered) in enumerate(turns):
        content = ([{"type": "image"}] if index == 0 else []) + [{"type": "text", "text": asked}]
        messages.append({"role": "user", "content": content})
        if answered is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answered}]})
    return messages


def mistral_instruct_prompt(history: Sequence[tuple[str, str]], question: str) -> str:
    """LLaVA-Med v1.5's conversation template (Mistral instruct), image first in the first turn."""
    turns = [*history, (question, None)]
    parts = []
    for index, (asked, answered) in enumerate(turns):
        text = f"<image>\n{asked}" if index == 0 else asked
        parts.append(f"[INST] {text} [/INST]" + (f" {answered}</s>" if answered is not None else ""))
    return "".join(parts)


VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def vicuna_prompt(history: Sequence[tuple[str, str]], question: str) -> str:
    """RaDialog's template (LLaVA's vicuna_v1, the image as "<image>. " before the first question)."""
    turns = [*history, (question, None)]
    parts = [VICUNA_SYSTEM]
    for index, (asked, answered) in enumerate(turns):
        text = f"<image>. {asked}" if index == 0 else asked
        parts.append(f"USER: {text} ASSISTANT:" + (f" {answered}</s>" if answered is not None else ""))
    return " ".join(parts)
