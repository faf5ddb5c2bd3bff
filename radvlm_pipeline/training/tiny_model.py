"""Build a LLaVA-OneVision with random weights, a locally trained tokenizer and the real chat template.

No weights can be downloaded here, yet the demo, the tests and the GPU benchmark must exercise the very
same ``from_pretrained(path)`` code path as the real llava-onevision-qwen2-7b-si. So this module writes a
complete model directory (config, weights, tokenizer, image processor, processor, chat template) from
configs alone. Two shapes:

- ``tiny``: SigLIP 2 layers / hidden 32 at 64 px (anyres with a 1x1 grid: the base image and one
  tile, 32 image tokens), Qwen2 2 layers / hidden 64: trains on CPU in milliseconds per step. Image
  tokens carry next to nothing a random toy can learn in the demo's time, so a 2x2 grid (80 tokens,
  the most of a single-turn sample) only slowed the demo's training and the learning in it.
- ``0.5b``: the real dimensions of llava-onevision-qwen2-0.5b (SigLIP so400m at 384 px, Qwen2-0.5B) for
  throughput and MFU measurements on a GPU; the tokenizer is still the tiny one (the embedding keeps
  the real vocabulary size so the FLOPs are real).

Run: ``python -m radvlm_pipeline.training.tiny_model --out DIR [--shape tiny|0.5b]``.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from radvlm_pipeline.schema import CHEXPERT_LABELS

# The chat template published with the Hugging Face LLaVA-OneVision checkpoints (Qwen2 ChatML roles,
# the image placeholder first in a turn). Assistant text is wrapped in {% generation %} as upstream.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{# Render all video then #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\\n' }}{% endfor %}"
    "{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}"
    "{% endif %}"
    "{{'<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")
SIGLIP_MEAN_STD = [0.5, 0.5, 0.5]


@dataclass(frozen=True)
class Shape:
    """The dimensions that differ between the CPU toy and the 0.5B benchmark model."""

    image_size: int
    patch_size: int
    vision_hidden: int
    vision_intermediate: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_vocab: int | None  # None: the tokenizer's own size
    max_tiles_per_side: int  # anyres grid: image_size multiples up to this many tiles per side


SHAPES = {
    "tiny": Shape(64, 16, 32, 64, 2, 2, 64, 128, 2, 4, 2, None, 1),
    # llava-onevision-qwen2-0.5b: SigLIP so400m-patch14-384 (26 layers used) + Qwen2-0.5B.
    "0.5b": Shape(384, 14, 1152, 4304, 26, 16, 896, 4864, 24, 14, 2, 151936, 6),
}


def tokenizer_training_text() -> list[str]:
    """Chest X-ray vocabulary the toy tokenizer learns its merges from: enough for the corpus to
    tokenize into words rather than bytes, deterministic so that every build is identical.

    Besides a word list, the corpus's own phrasing: every question and answer template, and the
    sentences, findings and regions the bundled sample's reports and boxes are written with. Without
    them most words of the sample split into single characters, which doubled the tokens of a sample
    and left the randomly initialised model too little to tell questions apart in the demo's epochs."""
    from radvlm_pipeline.corpus import templates
    from radvlm_pipeline.sample_data.common import FINDINGS, NORMAL_SENTENCES, REGIONS

    words = [label.lower() for label in CHEXPERT_LABELS] + [
        "the",
        "heart",
        "size",
        "is",
        "normal",
        "lungs",
        "are",
        "clear",
        "there",
        "no",
        "pleural",
        "effusion",
        "pneumothorax",
        "right",
        "left",
        "lower",
        "upper",
        "lobe",
        "opacity",
        "mediastinal",
        "contours",
        "within",
        "limits",
        "findings",
        "impression",
        "report",
        "image",
        "chest",
        "x-ray",
        "frontal",
        "view",
        "provide",
        "describe",
        "where",
        "located",
        "box",
        "coordinates",
        "abnormality",
        "region",
        "yes",
        "what",
        "which",
        "this",
        "of",
        "in",
        "a",
        "an",
        "and",
        "with",
        "on",
        "at",
        "to",
        "patient",
        "lung",
    ]
    numbers = [
        f"[{a / 100:.2f}, {b / 100:.2f}, {c / 100:.2f}, {d / 100:.2f}]"
        for a, b, c, d in zip(range(0, 100, 7), range(3, 100, 7), range(50, 100, 3), range(60, 100, 3))
    ]
    sentences = [" ".join(words[i : i + 12]).capitalize() + "." for i in range(0, len(words), 5)]
    template_sets = [value for value in vars(templates).values() if isinstance(value, templates.TemplateSet)]
    phrasing = [
        re.sub(r"\{\w+\}", "", text) for template_set in template_sets for text in template_set.all_texts()
    ]
    for finding in FINDINGS:
        phrasing += [
            sentence.replace("{side}", side) for sentence in finding.sentences for side in ("left", "right")
        ]
        phrasing += [finding.negative, finding.uncertain, finding.vindr or ""]
    phrasing += [*NORMAL_SENTENCES, *REGIONS]
    return sentences * 20 + numbers * 20 + [" ".join(words)] * 20 + phrasing * 5


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE (the Qwen2 family's scheme) trained here, wrapped as a Qwen2 tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from radvlm_pipeline.training.compat import qwen2_tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    bpe.train_from_iterator(tokenizer_training_text(), trainer=trainer)
    with tempfile.TemporaryDirectory() as scratch:
        vocab_file, merges_file = bpe.model.save(scratch)
        tokenizer = qwen2_tokenizer(Path(vocab_file), Path(merges_file))
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    probe = "<|im_start|>user\nThe heart size is normal. [0.12, 0.34, 0.56, 0.78]<|im_end|>"
    if (
        tokenizer.decode(tokenizer(probe)["input_ids"]) != probe
    ):  # e.g. an API change leaving the vocabulary empty
        raise RuntimeError("the locally trained tokenizer does not round-trip text")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def grid_pinpoints(shape: Shape) -> list[list[int]]:
    side = range(1, shape.max_tiles_per_side + 1)
    return [[shape.image_size * h, shape.image_size * w] for h in side for w in side]


def build_model_directory(out: Path, shape_name: str = "tiny", seed: int = 0) -> Path:
    """Write a complete from_pretrained-loadable LLaVA-OneVision directory to ``out``."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen2Config,
        SiglipVisionConfig,
    )

    from radvlm_pipeline.training.compat import pil_image_processor
    from radvlm_pipeline.training.processing import build_processor

    shape = SHAPES[shape_name]
    tokenizer = build_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vision = SiglipVisionConfig(
        hidden_size=shape.vision_hidden,
        intermediate_size=shape.vision_intermediate,
        num_hidden_layers=shape.vision_layers,
        num_attention_heads=shape.vision_heads,
        image_size=shape.image_size,
        patch_size=shape.patch_size,
        vision_use_head=False,
    )
    text = Qwen2Config(
        vocab_size=shape.text_vocab or len(tokenizer),
        hidden_size=shape.text_hidden,
        intermediate_size=shape.text_intermediate,
        num_hidden_layers=shape.text_layers,
        num_attention_heads=shape.text_heads,
        num_key_value_heads=shape.text_kv_heads,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=image_token_id,
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        image_grid_pinpoints=grid_pinpoints(shape),
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config)
    image_processor = pil_image_processor(
        "LlavaOnevision",
        size={"height": shape.image_size, "width": shape.image_size},
        image_grid_pinpoints=grid_pinpoints(shape),
        image_mean=SIGLIP_MEAN_STD,
        image_std=SIGLIP_MEAN_STD,
    )
    processor = build_processor(
        image_processor,
        tokenizer,
        num_image_tokens=(shape.image_size // shape.patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "radvlm_build.json").write_text(
        json.dumps({"shape": shape_name, "seed": seed, "parameters": model.num_parameters()}, indent=2) + "\n"
    )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write the model to")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = build_model_directory(args.out, args.shape, args.seed)
    print(f"wrote a {args.shape} LLaVA-OneVision to {path}")


if __name__ == "__main__":
    main()
