"""Where transformers 4.57 and 5.x need different calls: the one module that knows the major version.

CPU machines and CI keep transformers 4.57 (radgraph, a report metric, breaks on 5); GPU machines and new
installs have 5.x. The training and evaluation code runs on both, so every construction whose form
depends on the major goes through here, and ``make test`` runs the tests that reach these paths on both
(``.venv`` with 4.57, ``.venv-tf5`` with 5.x; tests marked ``transformers``).

Differences handled here:

- the Qwen2 tokenizer: 4.57's fast class reads ``vocab.json``/``merges.txt`` files; 5.x's single class takes
  the vocabulary and the merges themselves (``qwen2_tokenizer``);
- image processors: in 4.57 and early 5.x the plain class is the PIL/NumPy one; since 5.x split the
  backends (``...Pil`` classes; 5.17 and 5.24 have them, 5.0 not) the plain class is the torchvision one,
  which without torchvision (CPU installs: its PyPI wheels break beside the CPU torch) falls back to the
  PIL one with a warning, so the ``...Pil`` class is asked for by name where it exists. Both save the plain
  name, so a machine with torchvision loads the directory with its own backend (``pil_image_processor``);
- a LLaVA-OneVision processor without video processor: the stock class insists on one (torchvision
  again); 4.57 reads the sub-processors from the class's ``attributes``, 5.x from ``__init__``'s
  parameters, and the subclass declares both (``image_only_processor_class``).

Differences the code avoids depending on, so nothing here branches on them:

- the processor's ``return_assistant_tokens_mask`` is all zeros once ``<image>`` is expanded on 4.57 and
  still on 5.17 (5.24 gets it right, less the end-of-turn token): ``processing.py`` computes the
  assistant spans itself, identically on every version;
- a tokenizer's ``apply_chat_template(tokenize=True)`` returns ids on 4.57 and a dict on 5.x: callers
  pass ``return_dict`` explicitly;
- image-token expansion, pixel values, token ids and greedy answers of a model saved by 4.57 are the same
  on 5.x. A directory saved by 5.x (image processor inside ``processor_config.json``, special tokens as a
  list) does not load on 4.57: a model fine-tuned on 5.x is evaluated on 5.x.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import transformers

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def qwen2_tokenizer(vocab_file: Path, merges_file: Path):
    """A Qwen2 tokenizer (the Qwen2 pre-tokenizer and byte-level decoding) over a given BPE model."""
    if TRANSFORMERS_MAJOR < 5:
        return transformers.Qwen2TokenizerFast(vocab_file=str(vocab_file), merges_file=str(merges_file))
    merges = [
        tuple(line.split(" "))
        for line in Path(merges_file).read_text().splitlines()
        if line and not line.startswith("#version")
    ]
    return transformers.Qwen2Tokenizer(vocab=json.loads(Path(vocab_file).read_text()), merges=merges)


def pil_image_processor(model_type: str, **kwargs):
    """The PIL/NumPy image processor of a model type (``"LlavaOnevision"``, ``"CLIP"``), on either major."""
    pil = f"{model_type}ImageProcessorPil"
    name = pil if hasattr(transformers, pil) else f"{model_type}ImageProcessor"
    return getattr(transformers, name)(**kwargs)


@functools.cache
def image_only_processor_class():
    """LlavaOnevisionProcessor less its video processor, saved and loaded under the stock class's name."""

    class ImageOnlyProcessor(transformers.LlavaOnevisionProcessor):
        attributes = ["image_processor", "tokenizer"]  # 4.57; 5.x reads __init__'s parameters

        def __init__(
            self,
            image_processor=None,
            tokenizer=None,
            num_image_tokens=None,
            vision_feature_select_strategy=None,
            chat_template=None,
            image_token="<image>",
            video_token="<video>",
            vision_aspect_ratio="anyres_max_9",
            **kwargs,
        ):
            self.num_image_tokens = num_image_tokens
            self.vision_feature_select_strategy = vision_feature_select_strategy
            self.image_token = image_token
            self.video_token = video_token
            self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(video_token)
            self.vision_aspect_ratio = vision_aspect_ratio
            transformers.ProcessorMixin.__init__(
                self, image_processor, tokenizer, chat_template=chat_template
            )

    # Saved configs name the stock class, so the directory is an ordinary LLaVA-OneVision one.
    ImageOnlyProcessor.__name__ = ImageOnlyProcessor.__qualname__ = "LlavaOnevisionProcessor"
    return ImageOnlyProcessor
