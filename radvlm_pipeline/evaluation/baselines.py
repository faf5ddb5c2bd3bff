"""The models the evaluation compares: our fine-tuned recipes, the paper's five baselines and an oracle.

Each ``ModelAdapter`` knows three things about its model: the prompt it expects (the paper adapts each
baseline's recommended template, section 4.3.1), how its answers write boxes (CheXagent on a 0-100 grid
inside ``<|box|>`` tags, MAIRA-2 as 100-bin tokens on a centre-cropped square), and how to load it from
a local folder. Answers are converted to the project's text conventions (``[x1, y1, x2, y2]``, two
decimals) so every metric reads every model the same way.

Loading never downloads: a missing folder raises ``BaselineUnavailable`` and the partition reports
"not available" with that reason. LLaVA-OneVision and LLaVA-Med (in the transformers LLaVA layout) are
transformers architectures and load like any ``from_pretrained`` folder; CheXagent and MAIRA-2 ship
their own modelling code (``trust_remote_code``, from the local folder only); RaDialog is LLaVA-1.5 with
a BioViL-T encoder that only its own repository can build, so it is reported as not available.

The oracle answers with the reference answer: every metric must give it its best score, which checks
the metric and the evaluation sets together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from radvlm_pipeline.boxes import format_box
from radvlm_pipeline.evaluation.generation import (
    CONVERSATION_TASKS,
    EVALUATED_TASKS,
    GROUNDING_TASKS,
    AnswerGenerator,
    Request,
)
from radvlm_pipeline.schema import CHEXPERT_LABELS


class BaselineUnavailable(RuntimeError):
    """The model cannot be run here; the message says why and what to configure."""


def require_model_folder(path: Path | None, title: str) -> Path:
    if path is None or not Path(path).is_dir():
        raise BaselineUnavailable(f"{title}: no model folder at {path} (configure its local path)")
    if not (Path(path) / "config.json").is_file():
        raise BaselineUnavailable(
            f"{title}: {path} has no config.json, so it is not a from_pretrained folder"
        )
    return Path(path)


def pick_device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _dtype(device: str):
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def open_rgb(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def load_remote_code_model(path: Path | None, title: str, device: str | None):
    """(folder, device, model) for a model that ships its own modelling code, from the local folder only."""
    from transformers import AutoModelForCausalLM

    folder = require_model_folder(path, title)
    device = pick_device(device)
    model = (
        AutoModelForCausalLM.from_pretrained(
            folder, trust_remote_code=True, local_files_only=True, dtype=_dtype(device)
        )
        .to(device)
        .eval()
    )
    return folder, device, model


class ModelAdapter:
    """Prompt format, answer format and loading of one model family; subclasses override what differs."""

    name: str
    title: str
    tasks: frozenset[str]

    def __init__(self, name: str, title: str, tasks: Sequence[str]):
        self.name, self.title, self.tasks = name, title, frozenset(tasks)

    def question(self, request: Request) -> str:
        """The question as this model is asked it (default: the evaluation set's own wording)."""
        return request.question

    def to_answer(self, task: str, raw: str, image_path: Path) -> str:
        """The model's answer in the project's conventions (default: unchanged)."""
        return raw.strip()

    def load(
        self, path: Path | None, device: str | None = None, max_new_tokens: int = 256
    ) -> AnswerGenerator:
        raise NotImplementedError


class VisionChatGenerator:
    """A transformers image-text model answering a batch of requests greedily.

    ``render(history, question)`` writes the full prompt text in the model's template; the processor
    expands its image placeholder and batches with left padding so generation continues every row.
    """

    def __init__(self, model, processor, render, adapter: ModelAdapter, device: str, max_new_tokens: int):
        self.model, self.processor, self.render, self.adapter = model, processor, render, adapter
        self.device, self.max_new_tokens = device, max_new_tokens
        processor.tokenizer.padding_side = "left"

    def answer(self, requests: Sequence[Request]) -> list[str]:
        import torch

        prompts = [self.render(request.history, self.adapter.question(request)) for request in requests]
        images = [open_rgb(request.image_path) for request in requests]
        inputs = self.processor(images=images, text=prompts, return_tensors="pt", padding=True)
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        tokenizer = self.processor.tokenizer
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                do_sample=False,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id
                if tokenizer.pad_token_id is not None
                else tokenizer.eos_token_id,
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]


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


class LlavaOnevisionAdapter(ModelAdapter):
    """Our fine-tuned recipes and the LLaVA-OneVision base: the model's own chat template."""

    def load(self, path, device=None, max_new_tokens=256):
        from transformers import LlavaOnevisionForConditionalGeneration

        from radvlm_pipeline.training.processing import load_processor

        folder = require_model_folder(path, self.title)
        device = pick_device(device)
        model = LlavaOnevisionForConditionalGeneration.from_pretrained(folder, dtype=_dtype(device))
        processor = load_processor(folder)

        def render(history, question):
            return processor.apply_chat_template(chat_messages(history, question), add_generation_prompt=True)

        return VisionChatGenerator(model.to(device).eval(), processor, render, self, device, max_new_tokens)


def mistral_instruct_prompt(history: Sequence[tuple[str, str]], question: str) -> str:
    """LLaVA-Med v1.5's conversation template (Mistral instruct), image first in the first turn."""
    turns = [*history, (question, None)]
    parts = []
    for index, (asked, answered) in enumerate(turns):
        text = f"<image>\n{asked}" if index == 0 else asked
        parts.append(f"[INST] {text} [/INST]" + (f" {answered}</s>" if answered is not None else ""))
    return "".join(parts)


class LlavaMedAdapter(ModelAdapter):
    """LLaVA-Med v1.5 (Mistral-7B) converted to the transformers LLaVA layout."""

    def load(self, path, device=None, max_new_tokens=256):
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        folder = require_model_folder(path, self.title)
        device = pick_device(device)
        model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=_dtype(device))
        processor = AutoProcessor.from_pretrained(folder)
        return VisionChatGenerator(
            model.to(device).eval(), processor, mistral_instruct_prompt, self, device, max_new_tokens
        )


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


class RaDialogAdapter(ModelAdapter):
    REPORT_PROMPT = "Write a radiology report for this X-Ray."

    def question(self, request):
        return self.REPORT_PROMPT if request.task == "report_generation" else request.question

    def prompt(self, request: Request) -> str:
        return vicuna_prompt(request.history, self.question(request))

    def to_answer(self, task, raw, image_path):
        return raw.replace("</s>", "").strip()

    def load(self, path, device=None, max_new_tokens=256):
        folder = require_model_folder(path, self.title)
        raise BaselineUnavailable(
            f"{self.title}: {folder} holds RaDialog, whose LLaVA-1.5 + BioViL-T architecture is not in "
            "transformers; it runs only with its own repository's code, which this pipeline does not vendor"
        )


# CheXagent lists the options explicitly for classification (paper section 4.3.2); "No Finding" is not one.
CHEXAGENT_OPTIONS = ", ".join(label.lower() for label in CHEXPERT_LABELS if label != "No Finding")
_CHEXAGENT_BOX = re.compile(r"<\|box\|>\s*\((\d+)\s*,\s*(\d+)\)\s*,\s*\((\d+)\s*,\s*(\d+)\)\s*<\|/box\|>")


def chexagent_boxes(text: str) -> list[tuple[float, float, float, float]]:
    """CheXagent-2's ``<|box|> (x1,y1),(x2,y2) <|/box|>`` on a 0-100 grid, as normalised boxes."""
    return [tuple(int(value) / 100 for value in match.groups()) for match in _CHEXAGENT_BOX.finditer(text)]


class CheXagentAdapter(ModelAdapter):
    QUESTIONS = {
        "report_generation": "Write an example findings section for the CXR",
        "classification": f"Identify any diseases visible in the given CXR. Options:\n {CHEXAGENT_OPTIONS}",
        "abnormality_grounding": "Locate {} for the given image.",
        "anatomical_grounding": "Please locate the following anatomical region: {}",
        "phrase_grounding": "Please locate the following phrase: {}",
    }

    def question(self, request):
        template = self.QUESTIONS.get(request.task)
        if template is None:
            return request.question
        if "{}" in template:
            if request.target_label is None:
                raise ValueError(
                    f"{self.title} needs the grounding target of each {request.task} row (target_labels)"
                )
            return template.format(request.target_label)
        return template

    def to_answer(self, task, raw, image_path):
        if task in GROUNDING_TASKS:
            return ", ".join(format_box(box) for box in chexagent_boxes(raw))
        return raw.strip()

    def load(self, path, device=None, max_new_tokens=256):
        from transformers import AutoTokenizer

        folder, device, model = load_remote_code_model(path, self.title, device)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True, local_files_only=True)
        return CheXagentGenerator(model, tokenizer, self, device, max_new_tokens)


class CheXagentGenerator:
    """CheXagent-2's model-card usage: its tokenizer builds the image+text query, one request at a time."""

    def __init__(self, model, tokenizer, adapter: CheXagentAdapter, device: str, max_new_tokens: int):
        self.model, self.tokenizer, self.adapter = model, tokenizer, adapter
        self.device, self.max_new_tokens = device, max_new_tokens

    def answer(self, requests):
        import torch

        answers = []
        for request in requests:
            query = self.tokenizer.from_list_format(
                [{"image": str(request.image_path)}, {"text": self.adapter.question(request)}]
            )
            conversation = [
                {"from": "system", "value": "You are a helpful assistant."},
                {"from": "human", "value": query},
            ]
            input_ids = self.tokenizer.apply_chat_template(
                conversation, add_generation_prompt=True, return_tensors="pt"
            )
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids.to(self.device),
                    do_sample=False,
                    num_beams=1,
                    max_new_tokens=self.max_new_tokens,
                )[0]
            answers.append(
                self.tokenizer.decode(output[input_ids.size(1) :], skip_special_tokens=True).strip()
            )
        return answers


_MAIRA_BOX = re.compile(r"<x(\d+)><y(\d+)><x(\d+)><y(\d+)>")
_MAIRA_MARKUP = re.compile(r"</?obj>|<box>.*?</box>|</?box>")
MAIRA_COORDINATE_BINS = 100


def maira2_boxes(text: str, width: int, height: int) -> list[tuple[float, float, float, float]]:
    """MAIRA-2's box tokens as boxes normalised to the original image.

    Each coordinate token is one of 100 bins over the square the processor centre-crops (side = the
    shorter image side); the bin centre is mapped back through the crop offset to the full image.
    """
    side = min(width, height)
    x_offset, y_offset = (width - side) // 2, (height - side) // 2
    boxes = []
    for match in _MAIRA_BOX.finditer(text):
        x1, y1, x2, y2 = ((int(value) + 0.5) / MAIRA_COORDINATE_BINS for value in match.groups())
        boxes.append(
            (
                (x1 * side + x_offset) / width,
                (y1 * side + y_offset) / height,
                (x2 * side + x_offset) / width,
                (y2 * side + y_offset) / height,
            )
        )
    return boxes


class Maira2Adapter(ModelAdapter):
    def to_answer(self, task, raw, image_path):
        if task in GROUNDING_TASKS:
            width, height = image_size(image_path)
            return ", ".join(format_box(box) for box in maira2_boxes(raw, width, height))
        return re.sub(r"\s+", " ", _MAIRA_MARKUP.sub(" ", raw)).strip()

    def load(self, path, device=None, max_new_tokens=256):
        from transformers import AutoProcessor

        folder, device, model = load_remote_code_model(path, self.title, device)
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True, local_files_only=True)
        return Maira2Generator(model, processor, device, max_new_tokens)


class Maira2Generator:
    """MAIRA-2's model-card usage: findings from the frontal image alone, or a phrase grounded."""

    def __init__(self, model, processor, device: str, max_new_tokens: int):
        self.model, self.processor, self.device, self.max_new_tokens = (
            model,
            processor,
            device,
            max_new_tokens,
        )

    def answer(self, requests):
        import torch

        answers = []
        for request in requests:
            image = open_rgb(request.image_path)
            if request.task in GROUNDING_TASKS:
                if request.target_label is None:
                    raise ValueError(f"MAIRA-2 needs the phrase of each {request.task} row (target_labels)")
                inputs = self.processor.format_and_preprocess_phrase_grounding_input(
                    frontal_image=image, phrase=request.target_label, return_tensors="pt"
                )
            else:
                inputs = self.processor.format_and_preprocess_reporting_input(
                    current_frontal=image,
                    current_lateral=None,
                    prior_frontal=None,
                    indication=None,
                    technique=None,
                    comparison=None,
                    prior_report=None,
                    return_tensors="pt",
                    get_grounding=False,
                )
            inputs = inputs.to(self.device)
            with torch.inference_mode():
                output = self.model.generate(**inputs, do_sample=False, max_new_tokens=self.max_new_tokens)
            prompt_length = inputs["input_ids"].shape[-1]
            answers.append(self.processor.decode(output[0][prompt_length:], skip_special_tokens=True).strip())
        return answers


class OracleGenerator:
    def answer(self, requests):
        return [request.reference or "" for request in requests]


class OracleAdapter(ModelAdapter):
    def load(self, path, device=None, max_new_tokens=256):
        return OracleGenerator()


# --- the partitions -------------------------------------------------------------------------------

REPORT = ("report_generation",)
BASELINES: dict[str, ModelAdapter] = {
    adapter.name: adapter
    for adapter in (
        # Which tasks each baseline is evaluated on: the paper's Tables 3-5 and Figure 4.
        LlavaOnevisionAdapter("llava_onevision", "LLaVA-OV", REPORT + CONVERSATION_TASKS),
        LlavaMedAdapter("llava_med", "LLaVA-Med", REPORT + CONVERSATION_TASKS),
        RaDialogAdapter("radialog", "RaDialog", REPORT + ("classification",) + CONVERSATION_TASKS),
        CheXagentAdapter("chexagent", "CheXagent", REPORT + ("classification",) + GROUNDING_TASKS),
        Maira2Adapter("maira2", "MAIRA-2", REPORT + GROUNDING_TASKS),
    )
}
ORACLE = OracleAdapter("oracle", "Oracle (ground truth)", EVALUATED_TASKS)


def recipe_adapters() -> dict[str, ModelAdapter]:
    """One adapter per fine-tuning recipe, evaluated on the tasks it trained on (paper Table 6)."""
    from radvlm_pipeline.training.recipes import RECIPES

    return {
        recipe: LlavaOnevisionAdapter(
            recipe,
            "RadVLM" if recipe == "all" else f"RadVLM ({recipe.replace('_', ' ')} only)",
            [task for task in EVALUATED_TASKS if task in tasks],
        )
        for recipe, tasks in RECIPES.items()
    }


def model_adapters() -> dict[str, ModelAdapter]:
    """Every model partition of the evaluation: recipes, baselines, oracle."""
    return {**recipe_adapters(), **BASELINES, ORACLE.name: ORACLE}


def default_model_path(storage_root: Path, name: str) -> Path | None:
    """Where a model partition's weights are expected when the configuration names no other path.

    Recipes: the fine-tuning asset's ``final`` folder. LLaVA-OneVision: the base model the fine-tuning
    started from (``models/base/current.json``, written by the base_model asset), else the embedded tiny
    model's folder. Other baselines: ``models/baselines/<name>``.
    """
    from radvlm_pipeline.training.base_model import TINY_MODEL_NAME, base_model_dir, current_base_model
    from radvlm_pipeline.training.recipes import RECIPES, recipe_output_dir

    if name == ORACLE.name:
        return None
    if name in RECIPES:
        return recipe_output_dir(storage_root, name) / "final"
    if name == "llava_onevision":
        try:
            return Path(current_base_model(storage_root)["path"])
        except FileNotFoundError:
            return base_model_dir(storage_root) / TINY_MODEL_NAME
    return storage_root / "models" / "baselines" / name
