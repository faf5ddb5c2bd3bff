"""Baseline adapters: prompt formats, answer/box conventions, and loading tiny models from local folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from radvlm_pipeline.evaluation.adapters import (
    CheXagentAdapter,
    LlavaMedAdapter,
    LlavaOnevisionAdapter,
    Maira2Adapter,
)
from radvlm_pipeline.evaluation.answer_formats import chexagent_boxes, maira2_boxes
from radvlm_pipeline.evaluation.baselines import BASELINES, ORACLE, default_model_path, model_adapters
from radvlm_pipeline.evaluation.generation import Request
from radvlm_pipeline.evaluation.model_loading import BaselineUnavailable
from radvlm_pipeline.evaluation.prompt_formats import chat_messages, mistral_instruct_prompt, vicuna_prompt

pytestmark = pytest.mark.transformers


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "cxr.png"
    Image.new("RGB", (200, 100), 90).save(path)  # wide: MAIRA-2 crops a 100 px square at x = 50
    return path


def test_chexagent_boxes_on_the_0_100_grid(image):
    raw = "Found <|box|> (10,20),(30,45) <|/box|> and <|box|>(50,50),(99,100)<|/box|>"
    assert chexagent_boxes(raw) == [(0.1, 0.2, 0.3, 0.45), (0.5, 0.5, 0.99, 1.0)]
    adapter = BASELINES["chexagent"]
    assert (
        adapter.to_answer("phrase_grounding", raw, image)
        == "[0.10, 0.20, 0.30, 0.45], [0.50, 0.50, 0.99, 1.00]"
    )
    assert adapter.to_answer("phrase_grounding", "no box", image) == ""
    assert adapter.to_answer("report_generation", " Findings. ", image) == "Findings."


def test_chexagent_prompts(image):
    adapter: CheXagentAdapter = BASELINES["chexagent"]
    classification = adapter.question(Request("classification", image, "Which abnormalities?"))
    assert classification.startswith("Identify any diseases") and "support devices" in classification
    assert "no finding" not in classification.lower()
    grounding = Request("abnormality_grounding", image, "Where is the nodule?", target_label="Nodule/Mass")
    assert adapter.question(grounding) == "Locate Nodule/Mass for the given image."
    with pytest.raises(ValueError, match="target_labels"):
        adapter.question(Request("phrase_grounding", image, "Where?"))


def test_maira2_boxes_undo_the_centre_crop(image):
    raw = "<obj>Left effusion<box><x0><y0><x99><y99></box></obj>"
    (box,) = maira2_boxes(raw, width=200, height=100)
    assert box == pytest.approx((0.2525, 0.005, 0.7475, 0.995))
    adapter: Maira2Adapter = BASELINES["maira2"]
    assert adapter.to_answer("anatomical_grounding", raw, image) == "[0.25, 0.01, 0.75, 0.99]"
    assert (
        adapter.to_answer("report_generation", raw + " <obj>No pneumothorax.</obj>", image)
        == "Left effusion No pneumothorax."
    )


def test_conversation_templates_carry_the_history():
    history = (("What view?", "PA."),)
    assert vicuna_prompt(history, "Any effusion?").endswith(
        "USER: <image>. What view? ASSISTANT: PA.</s> USER: Any effusion? ASSISTANT:"
    )
    assert (
        mistral_instruct_prompt(history, "Any effusion?")
        == "[INST] <image>\nWhat view? [/INST] PA.</s>[INST] Any effusion? [/INST]"
    )
    messages = chat_messages(history, "Any effusion?")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][0] == {"type": "image"} and len(messages[2]["content"]) == 1


def test_radialog_report_prompt_and_unavailability(tmp_path):
    adapter = BASELINES["radialog"]
    assert (
        adapter.question(Request("report_generation", Path("x"), "Write the report."))
        == "Write a radiology report for this X-Ray."
    )
    with pytest.raises(BaselineUnavailable, match="no model folder"):
        adapter.load(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BaselineUnavailable, match="not in transformers"):
        adapter.load(tmp_path)


@pytest.mark.parametrize("name", ["chexagent", "maira2", "llava_med", "llava_onevision"])
def test_missing_weights_are_not_available(name, tmp_path):
    with pytest.raises(BaselineUnavailable, match="no model folder"):
        BASELINES[name].load(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BaselineUnavailable, match="no config.json"):
        BASELINES[name].load(tmp_path / "empty")


def test_partitions_and_default_paths(tmp_path):
    adapters = model_adapters()
    assert list(adapters)[:7] == [
        "all",
        "report_generation",
        "classification",
        "anatomical_grounding",
        "abnormality_grounding",
        "phrase_grounding",
        "conversation",
    ]
    assert {"llava_onevision", "llava_med", "radialog", "chexagent", "maira2", "oracle"} <= set(adapters)
    assert adapters["conversation"].tasks == {"conversation", "grounded_conversation"}
    assert adapters["abnormality_grounding"].tasks == {"abnormality_grounding"}
    assert "classification" not in adapters["maira2"].tasks
    assert default_model_path(tmp_path, "all") == tmp_path / "models" / "all" / "final"
    assert (
        default_model_path(tmp_path, "llava_onevision")
        == tmp_path / "models" / "base" / "tiny-llava-onevision"
    )
    assert default_model_path(tmp_path, "chexagent") == tmp_path / "models" / "baselines" / "chexagent"
    assert default_model_path(tmp_path, "oracle") is None


def test_oracle_answers_with_the_reference(image):
    generator = ORACLE.load(None)
    assert generator.answer([Request("classification", image, "q", reference="Cardiomegaly.")]) == [
        "Cardiomegaly."
    ]


def test_tiny_llava_onevision_loads_and_answers_greedily(tmp_path, image):
    from radvlm_pipeline.training.tiny_model import build_model_directory

    folder = build_model_directory(tmp_path / "tiny")
    generator = LlavaOnevisionAdapter("all", "RadVLM", ["report_generation"]).load(
        folder, device="cpu", max_new_tokens=6
    )
    requests = [
        Request("report_generation", image, "Write the report."),
        Request("conversation", image, "And the heart?", history=(("What view?", "PA."),)),
    ]
    first, again = generator.answer(requests), generator.answer(requests)
    assert len(first) == 2 and all(isinstance(text, str) for text in first)
    assert first == again  # greedy: deterministic


def build_tiny_llava(folder: Path) -> Path:
    """LLaVA-Med's architecture in the transformers layout: CLIP vision tower + Mistral, from configs."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        MistralConfig,
    )

    from radvlm_pipeline.training.compat import pil_image_processor
    from radvlm_pipeline.training.tiny_model import build_tokenizer

    tokenizer = build_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )
    text = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    config = LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor = LlavaProcessor(
        image_processor=pil_image_processor(
            "CLIP", size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(folder)
    return folder


def test_tiny_llava_med_layout_loads_and_answers(tmp_path, image):
    folder = build_tiny_llava(tmp_path / "llava-med")
    generator = LlavaMedAdapter("llava_med", "LLaVA-Med", ["report_generation"]).load(
        folder, max_new_tokens=4
    )
    answers = generator.answer(
        [
            Request("report_generation", image, "Describe."),
            Request("conversation", image, "More?", history=(("Q", "A"),)),
        ]
    )
    assert len(answers) == 2 and all(isinstance(text, str) for text in answers)


def test_chexagent_generator_prompts_through_its_tokenizers_chat_template(image):
    """CheXagent's tokenizer (remote code) builds the query; here the tiny Qwen2 tokenizer stands in with
    the two things the generator asks of it, so its prompt-to-generate path runs on a real model."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from radvlm_pipeline.evaluation.adapters import CheXagentGenerator
    from radvlm_pipeline.training.tiny_model import build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['from'] }}\n{{ m['value'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>gpt\n{% endif %}"
    )
    queries = []

    def from_list_format(items):
        queries.append(items)
        return "".join(f"<img>{item['image']}</img>" if "image" in item else item["text"] for item in items)

    tokenizer.from_list_format = from_list_format
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    torch.manual_seed(0)
    generator = CheXagentGenerator(
        Qwen2ForCausalLM(config).eval(), tokenizer, BASELINES["chexagent"], "cpu", 5
    )
    request = Request("abnormality_grounding", image, "Where?", target_label="Nodule/Mass")
    answers = generator.answer([request, request])
    assert queries[0] == [{"image": str(image)}, {"text": "Locate Nodule/Mass for the given image."}]
    assert len(answers) == 2 and answers[0] == answers[1] and isinstance(answers[0], str)
