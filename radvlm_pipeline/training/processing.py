"""From corpus conversations to model inputs: the chat template, image tokens and assistant-only labels.

Why the labels are computed here rather than by ``return_assistant_tokens_mask``: on transformers 4.57,
and still on 5.17, the processor's assistant mask is all zeros once ``<image>`` is expanded (every label
-100, NaN loss; right on 5.24). So, as LLaVA codebases do, the assistant spans come from the
conversation structure: the model's own chat template renders the conversation one message at a time,
each assistant message's text is located in that rendering, and tokens whose characters fall inside an
assistant answer (including its end-of-turn token) are the only ones that carry labels, in every round
of a multi-turn conversation. This works unchanged on transformers 4.57 and 5.x (``compat.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

IGNORE_INDEX = -100  # the label value PyTorch's cross-entropy skips
IMAGE_PLACEHOLDER = "<image>\n"  # how the corpus marks the image in the first human turn
ROLES = {"human": "user", "gpt": "assistant"}


def build_processor(image_processor, tokenizer, **kwargs):
    """A LLaVA-OneVision processor for images only.

    The stock class insists on a video processor, which needs torchvision; torchvision's PyPI wheels
    break beside the CPU torch. Training never sees videos, so the image-only variant (``compat.py``) is
    used on every machine and saves a directory the stock class (and ``from_pretrained``) reads as usual."""
    from radvlm_pipeline.training.compat import image_only_processor_class

    return image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer, **kwargs)


def load_processor(model_path: str | Path):
    from radvlm_pipeline.training.compat import image_only_processor_class

    processor = image_only_processor_class().from_pretrained(str(model_path))
    processor.tokenizer.padding_side = "right"  # training pads after the answer
    return processor


def to_messages(conversation: Sequence[dict]) -> list[dict]:
    """Corpus turns ({from: human|gpt, value}) as chat-template messages with the image in turn one."""
    if not conversation or len(conversation) % 2:
        raise ValueError(f"a conversation needs user/assistant pairs, got {len(conversation)} turns")
    messages = []
    for index, turn in enumerate(conversation):
        expected = "human" if index % 2 == 0 else "gpt"
        if turn["from"] != expected:
            raise ValueError(f"turn {index} is from {turn['from']!r}, expected {expected!r}")
        text = turn["value"]
        content = []
        if index == 0:
            if not text.startswith(IMAGE_PLACEHOLDER):
                raise ValueError("the first human turn must start with '<image>\\n'")
            text = text[len(IMAGE_PLACEHOLDER) :]
            content.append({"type": "image"})
        elif "<image>" in text:
            raise ValueError(f"turn {index} mentions <image>; only the first turn carries the image")
        content.append({"type": "text", "text": text})
        messages.append({"role": ROLES[turn["from"]], "content": content})
    return messages


def render_with_answer_spans(processor, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The full chat text and the character spans of each assistant answer plus its end-of-turn marker.

    Each message is rendered as the difference between the template applied to the messages up to it
    and up to the one before, so the spans follow the template of whichever model is trained."""
    rendered = ""
    spans = []
    for count, message in enumerate(messages, start=1):
        text = processor.apply_chat_template(messages[:count], tokenize=False)
        if not text.startswith(rendered):
            raise ValueError("the chat template does not render conversations incrementally")
        if message["role"] == "assistant":
            answer = message["content"][-1]["text"]
            start = text.index(answer, len(rendered))
            spans.append((start, len(text.rstrip())))
        rendered = text
    return rendered, spans


@dataclass
class EncodedSample:
    """One conversation as token ids (image placeholder not yet expanded) and per-token labels."""

    text: str
    input_ids: list[int]
    labels: list[int]


def encode_conversation(processor, conversation: Sequence[dict]) -> EncodedSample:
    text, spans = render_with_answer_spans(processor, to_messages(conversation))
    encoding = processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for token_id, (start, end) in zip(encoding["input_ids"], encoding["offset_mapping"]):
        inside = any(span_start <= start and end <= span_end for span_start, span_end in spans)
        labels.append(token_id if inside else IGNORE_INDEX)
    return EncodedSample(text=text, input_ids=list(encoding["input_ids"]), labels=labels)


def expand_labels(sample: EncodedSample, expanded_ids: Sequence[int], image_token_id: int) -> list[int]:
    """Labels aligned with the processor's ids, where each image placeholder became many image tokens.

    The non-image tokens must match one for one; anything else means the tokenization drifted and
    training on misaligned labels would be silently wrong, so it raises."""
    image_tokens = sum(1 for token in expanded_ids if token == image_token_id)
    placeholders = sum(1 for token in sample.input_ids if token == image_token_id)
    if placeholders != 1 or image_tokens < 1:
        raise ValueError(
            f"expected one image placeholder, found {placeholders} ({image_tokens} image tokens)"
        )
    labels = []
    for token, label in zip(sample.input_ids, sample.labels):
        labels.extend([IGNORE_INDEX] * image_tokens if token == image_token_id else [label])
    text_ids = [token for token in expanded_ids if token != image_token_id]
    own_ids = [token for token in sample.input_ids if token != image_token_id]
    if text_ids != own_ids or len(labels) != len(expanded_ids):
        raise ValueError("processor tokenization differs from the label tokenization")
    return labels


def encode_row(processor, conversation: Sequence[dict], image) -> dict:
    """One conversation and its image as the processor makes them (image tokens expanded), with its
    assistant-only labels: everything of a batch row that does not depend on the other rows."""
    import torch

    sample = encode_conversation(processor, conversation)
    row = processor(text=[sample.text], images=[image], return_tensors="pt")
    row = {key: value[0] for key, value in row.items()}
    ids = row["input_ids"].tolist()
    row["labels"] = torch.tensor(expand_labels(sample, ids, processor.image_token_id))
    return row


_PADDED = {"input_ids", "attention_mask", "pixel_values", "labels"}  # the rest of a row is stacked as is


def pad_rows(rows: Sequence[dict], pad_token_id: int, image_token_id: int, max_length: int) -> dict:
    """A training batch from encoded rows, as the processor pads a batch: ids and labels padded on the
    right, each image's patches padded with zeros to the batch's most.

    Sequences longer than ``max_length`` lose their tail (answer tokens first); cutting into the
    image tokens would break the model's image-feature count, so that raises instead."""
    import torch

    length = max(len(row["input_ids"]) for row in rows)
    patches = max(len(row["pixel_values"]) for row in rows)

    def padded(key: str, fill: int) -> torch.Tensor:
        return torch.stack(
            [torch.nn.functional.pad(row[key], (0, length - len(row[key])), value=fill) for row in rows]
        )

    batch = {
        "input_ids": padded("input_ids", pad_token_id),
        "attention_mask": padded("attention_mask", 0),
        "pixel_values": torch.stack(
            [
                torch.nn.functional.pad(
                    row["pixel_values"], (0, 0, 0, 0, 0, 0, 0, patches - len(row["pixel_values"]))
                )
                for row in rows
            ]
        ),
        **{key: torch.stack([row[key] for row in rows]) for key in rows[0] if key not in _PADDED},
        "labels": padded("labels", IGNORE_INDEX),
    }
    if length > max_length:
        if (batch["input_ids"][:, max_length:] == image_token_id).any():
            raise ValueError(f"max_length {max_length} would cut image tokens; raise max_length")
        for key in ("input_ids", "attention_mask", "labels"):
            batch[key] = batch[key][:, :max_length]
    return batch


def collate(processor, conversations: Sequence[Sequence[dict]], images: Sequence, max_length: int) -> dict:
    """A padded training batch: input_ids, attention_mask, pixel_values, image_sizes, labels."""
    rows = [encode_row(processor, c, image) for c, image in zip(conversations, images)]
    return pad_rows(rows, processor.tokenizer.pad_token_id, processor.image_token_id, max_length)
