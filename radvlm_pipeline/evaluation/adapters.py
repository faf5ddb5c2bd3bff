"""One adapter per model family: the prompt it expects, how its answers are read, how it is loaded.

The paper adapts each baseline's recommended template (section 4.3.1, ``prompt_formats.py``); answers
are converted to the project's text conventions (``[x1, y1, x2, y2]``, two decimals,
``answer_formats.py``) so every metric reads every model the same way.

Loading never downloads (``model_loading.py``). LLaVA-OneVision and LLaVA-Med (in the transformers LLaVA
layout) are transformers architectures and load like any ``from_pretrained`` folder; CheXagent and
MAIRA-2 ship their own modelling code (``trust_remote_code``, from the local folder only); RaDialog is
LLaVA-1.5 with a BioViL-T encoder that only its own repository can build, so it is reported as not
available.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from radvlm_pipeline.boxes import format_box
from radvlm_pipeline.evaluation.answer_formats import chexagent_boxes, maira2_boxes
from radvlm_pipeline.evaluation.generation import GROUNDING_TASKS, AnswerGenerator, Request
from radvlm_pipeline.evaluation.model_loading import (
    BaselineUnavailable,
    image_size,
    load_remote_code_model,
    model_dtype,
    pick_device,
    require_model_folder,
)
from radvlm_pipeline.evaluation.prompt_formats import chat_messages, mistral_instruct_prompt, vicuna_prompt
from radvlm_pipeline.images import open_rgb
from radvlm_pipeline.schema import CHEXPERT_LABELS


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


class LlavaOnevisionAdapter(ModelAdapter):
    """Our fine-tuned recipes and the LLaVA-OneVision base: the model's own chat template."""

    def load(self, path, device=None, max_new_tokens=256):
        from transformers import LlavaOnevisionForConditionalGeneration

        from radvlm_pipeline.training.processing import load_processor

        folder = require_model_folder(path, self.title)
        device = pick_device(device)
        model = LlavaOnevisionForConditionalGeneration.from_pretrained(folder, dtype=model_dtype(device))
        processor = load_processor(folder)

        def render(history, question):
            return processor.apply_chat_template(chat_messages(history, question), add_generation_prompt=True)

        return VisionChatGenerator(model.to(device).eval(), processor, render, self, device, max_new_tokens)


class LlavaMedAdapter(ModelAdapter):
    """LLaVA-Med v1.5 (Mistral-7B) converted to the transformers LLaVA layout."""

    def load(self, path, device=None, max_new_tokens=256):
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        folder = require_model_folder(path, self.title)
        device = pick_device(device)
        model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=model_dtype(device))
        processor = AutoProcessor.from_pretrained(folder)
        return VisionChatGenerator(
            model.to(device).eval(), processor, mistral_instruct_prompt, self, device, max_new_tokens
        )


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
            # The ids alone on both majors: transformers 5 returns a dict unless told otherwise.
            input_ids = self.tokenizer.apply_chat_template(
                conversation, add_generation_prompt=True, return_tensors="pt", return_dict=False
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


_MAIRA_MARKUP = re.compile(r"</?obj>|<box>.*?</box>|</?box>")


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
