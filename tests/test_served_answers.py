"""Evaluation answers through a serving engine: the real openai SDK against a local vision server that
checks every image and history it receives, the answer server's modes, and scoring by the same assets."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import stat
import sys
from dataclasses import replace
from pathlib import Path

import openai
import pytest
from dagster import materialize
from eval_fixtures import write_eval_sets
from fake_vision_server import FakeVisionServer

from assets.evaluation import eval_answers, task_evaluation_assets
from radvlm_pipeline.datasets import DATASETS
from radvlm_pipeline.evaluation.baselines import ORACLE, recipe_adapters
from radvlm_pipeline.evaluation.generation import Request, image_resolver, read_eval_set, split_turns
from radvlm_pipeline.evaluation.scoring import read_task_evaluation
from radvlm_pipeline.evaluation.served_answers import ServedAnswers, ServedAnswersFailed, answer_settings
from radvlm_pipeline.launch.serving import (
    ServedEndpoint,
    ServingError,
    ServingJobSpec,
    served_model_name,
    serving_sbatch_script,
    vllm_command,
)
from radvlm_pipeline.layout import StorageLayout
from radvlm_pipeline.llm import PromptTemplate
from radvlm_pipeline.llm.images import FILE_URL, ImageInput, resolve_images
from resources.llm import LLMResource
from resources.serving import AnswerServer
from resources.storage import PipelineStorage

FAKE_VLLM = Path(__file__).parent / "fake_vllm.py"
SCORED = ("classification", "anatomical_grounding", "abnormality_grounding", "phrase_grounding")
SCORED_ASSETS = [a for a in task_evaluation_assets if a.key.path[-1].removeprefix("eval_") in SCORED]


def write_weights(folder: Path, content: bytes = b"weights v1") -> Path:
    """A from_pretrained-shaped folder: the served backend only fingerprints it, the server loads it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["LlavaOnevisionForConditionalGeneration"]})
    )
    (folder / "model.safetensors").write_bytes(content)
    return folder


@pytest.fixture
def roots(tmp_path):
    data_root, storage_root = tmp_path / "data", tmp_path / "storage"
    write_eval_sets(data_root, storage_root)
    weights = write_weights(StorageLayout(storage_root).training_run("all").final)
    return data_root, storage_root, weights


def reference_answers(data_root: Path, storage_root: Path) -> dict[tuple[str, str], str]:
    """(image sha256, question) -> the reference answer, over every evaluation set: an oracle's replies."""
    resolve = image_resolver(data_root, storage_root)
    answers = {}
    for task in recipe_adapters()["all"].tasks:
        for row in read_eval_set(storage_root, task).to_dicts():
            sha256 = ImageInput.from_file(resolve(row["image_dataset"], row["image_path"])).sha256
            answers |= {(sha256, q): a for q, a in zip(*split_turns(row["conversation"]))}
    return answers


def url_server(storage: PipelineStorage, server: FakeVisionServer, **overrides) -> AnswerServer:
    values = dict(mode="url", url=server.base_url, approved_credentialed_datasets=list(DATASETS))
    return AnswerServer(storage=storage, **(values | overrides))


def run_answers(storage, answer_server, partition="all", assets=(), **config):
    return materialize(
        [eval_answers, *assets],
        partition_key=partition,
        resources={"storage": storage, "llm": LLMResource(storage=storage), "answer_server": answer_server},
        run_config={
            "ops": {"eval_answers": {"config": {"backend": "served", "max_new_tokens": 64, **config}}}
        },
        raise_on_error=False,
    )


def failure_message(result) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return failure.event_specific_data.user_failure_data.description


def test_served_answers_are_scored_like_any_other_and_a_rerun_sends_nothing(roots):
    data_root, storage_root, weights = roots
    storage = PipelineStorage(data_root=str(data_root), storage_root=str(storage_root))
    name = served_model_name("all", weights)
    with FakeVisionServer(name, str(weights), reference_answers(data_root, storage_root)) as server:
        result = run_answers(storage, url_server(storage, server), assets=SCORED_ASSETS)
        assert result.success, failure_message(result)
        sent = len(server.chat_requests)
        again = run_answers(storage, url_server(storage, server))
        assert again.success and len(server.chat_requests) == sent  # every answer from the cache
    assert server.rejected == []
    # One request per round: 3 + 2 rounds of conversation, 2 of grounded conversation, one per other row.
    rows = {task: read_eval_set(storage_root, task).height for task in recipe_adapters()["all"].tasks}
    assert sent == sum(rows.values()) - rows["conversation"] - rows["grounded_conversation"] + 5 + 2
    images = {sha256 for sha256, _ in server.images}
    assert {transport for _, transport in server.images} == {"data"} and len(images) == sum(rows.values())
    metadata = result.asset_materializations_for_node("eval_answers")[0].metadata
    assert metadata["backend"].value == "served" and metadata["served_model"].value == name
    assert metadata["llm_answers_recorded"].value == sent
    assert again.asset_materializations_for_node("eval_answers")[0].metadata["llm_cache_hits"].value == sent

    # The server answered like the oracle, so the same metric assets give the oracle's scores.
    assert materialize(
        [eval_answers, *SCORED_ASSETS],
        partition_key=ORACLE.name,
        resources={
            "storage": storage,
            "llm": LLMResource(storage=storage),
            "answer_server": AnswerServer(storage=storage),
        },
    ).success
    for task in SCORED:
        served, oracle = (read_task_evaluation(storage_root, task, model) for model in ("all", "oracle"))
        assert served.status == "scored"
        assert [(m.name, m.value) for m in served.metrics] == [(m.name, m.value) for m in oracle.metrics]
    assert read_task_evaluation(storage_root, "classification", "all").metric("Macro-F1").value == 100.0

    # The cache names images by hash: no pixels of a credentialed image are kept in it.
    cache = StorageLayout(storage_root).llm_cache
    image = next((data_root / "mimic-cxr").rglob("*.png")).read_bytes()
    assert base64.b64encode(image)[:200] not in cache.read_bytes()
    messages = json.loads(sqlite3.connect(cache).execute("SELECT messages_json FROM responses").fetchone()[0])
    assert messages[0]["content"][0]["image_url"]["url"].startswith("sha256:")


def test_retrained_weights_are_refused_by_a_server_still_serving_the_old_ones(roots):
    data_root, storage_root, weights = roots
    storage = PipelineStorage(data_root=str(data_root), storage_root=str(storage_root))
    old_name = served_model_name("all", weights)
    write_weights(weights, b"weights v2")
    with FakeVisionServer(old_name, str(weights)) as server:
        result = run_answers(storage, url_server(storage, server))
    assert not result.success
    message = failure_message(result)
    assert (
        f"serves {old_name}" in message
        and f"--served-model-name {served_model_name('all', weights)}" in message
    )
    assert server.chat_requests == [] and server.api_calls == ["GET /v1/models"]


def test_unapproved_datasets_are_refused_before_a_server_is_asked(roots):
    data_root, storage_root, weights = roots
    storage = PipelineStorage(data_root=str(data_root), storage_root=str(storage_root))
    with FakeVisionServer(served_model_name("all", weights)) as server:
        result = run_answers(
            storage, url_server(storage, server, approved_credentialed_datasets=["mimic_cxr"])
        )
    assert not result.success and "is credentialed data" in failure_message(result)
    assert server.api_calls == []


def test_baselines_prompted_with_their_authors_template_cannot_be_served(roots):
    data_root, storage_root, _ = roots
    storage = PipelineStorage(data_root=str(data_root), storage_root=str(storage_root))
    result = run_answers(storage, AnswerServer(storage=storage), partition="chexagent")
    assert not result.success and "only the local backend reproduces" in failure_message(result)


def served(server: FakeVisionServer, cache: Path, **overrides) -> ServedAnswers:
    storage = PipelineStorage(data_root=".", storage_root=".")
    base = AnswerServer(storage=storage, approved_credentialed_datasets=["mimic_cxr"], **overrides)
    fast_retries = replace(base.client_settings(), backoff_base_s=0.01, backoff_max_s=0.02)
    settings = answer_settings(fast_retries, ServedEndpoint(server.base_url, server.served_model), 32)
    return ServedAnswers(recipe_adapters()["all"], settings, cache)


def requests_for(images: list[Path]) -> list[Request]:
    return [
        Request("conversation", image, "Is the heart enlarged?", history=(), datasets=("mimic_cxr",))
        for image in images
    ]


def png(path: Path, seed: int) -> Path:
    from eval_fixtures import write_image

    write_image(path, seed)
    return path


def test_file_urls_retries_and_failed_requests_asked_again(tmp_path):
    images = [png(tmp_path / "media" / f"{n}.png", n) for n in range(3)]
    cache = tmp_path / "cache.sqlite"
    with FakeVisionServer("radvlm-all-abc", media_root=tmp_path / "media") as server:
        server.script(["500"])  # retried by the client
        answers = served(server, cache, image_transport=FILE_URL).answer(requests_for(images))
        assert answers == [
            server.reply(ImageInput.from_file(i).sha256, "Is the heart enlarged?") for i in images
        ]
        assert {transport for _, transport in server.images} == {"file"} and server.rejected == []

        server.always("500")
        generator = served(server, cache, image_transport=FILE_URL, max_retries=0)
        extra = [png(tmp_path / "media" / "3.png", 3)]
        with pytest.raises(ServedAnswersFailed, match=r"1 of 4 requests .* failed: \{'server_error': 1\}"):
            generator.answer(requests_for(images + extra))
        server.always(None)
        before = len(server.chat_requests)
        assert generator.answer(requests_for(images + extra))[:3] == answers
        assert len(server.chat_requests) == before + 1  # only the failed one: the others are cached

        outside = png(tmp_path / "elsewhere.png", 9)
        with pytest.raises(ServedAnswersFailed, match="outside the allowed local media path"):
            served(server, cache, image_transport=FILE_URL).answer(requests_for([outside]))


def test_history_and_images_in_the_messages_and_as_sent(tmp_path):
    image = ImageInput.from_file(png(tmp_path / "x.png", 1))
    template = PromptTemplate(name="t", system="", user="$question", version="1")
    messages = template.messages({"question": "Any lines?"}, (("What view?", "PA."),), (image,))
    assert messages == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"sha256:{image.sha256}"}},
                {"type": "text", "text": "What view?"},
            ],
        },
        {"role": "assistant", "content": "PA."},
        {"role": "user", "content": "Any lines?"},
    ]
    sent = resolve_images(messages, {image.reference: image.path}, "data_url")
    url = sent[0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest() == image.sha256
    assert resolve_images(messages, {image.reference: image.path}, FILE_URL)[0]["content"][0]["image_url"][
        "url"
    ] == (Path(image.path).resolve().as_uri())
    assert messages[1:] == sent[1:]


def local_answer_server(storage: PipelineStorage, tmp_path: Path, **overrides) -> AnswerServer:
    """Local mode with ``fake_vllm.py`` as the vllm executable."""
    script = tmp_path / "bin" / "vllm"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_VLLM} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    values = dict(mode="local", vllm_executable=str(script), poll_s=0.1, startup_timeout_s=30)
    return AnswerServer(storage=storage, **(values | overrides))


def test_local_mode_starts_the_server_checks_its_weights_and_stops_it(roots, tmp_path, monkeypatch):
    data_root, storage_root, weights = roots
    storage = PipelineStorage(data_root=str(data_root), storage_root=str(storage_root))
    server = local_answer_server(storage, tmp_path)
    with server.serve("all", weights, log=lambda line: None) as endpoint:
        assert endpoint.model == served_model_name("all", weights) and endpoint.card["root"] == str(weights)
        assert endpoint.base_url.startswith("http://127.0.0.1:")
    with pytest.raises(openai.APIConnectionError):  # stopped with the block
        openai.OpenAI(base_url=endpoint.base_url, api_key="x", max_retries=0, timeout=2).models.list()

    monkeypatch.setenv("FAKE_VLLM_EXIT", "3")
    with pytest.raises(ServingError, match=r"exited with code 3 before serving(.|\n)*cannot load"):
        with server.serve("all", weights, log=lambda line: None):
            pass
    missing = AnswerServer(storage=storage, mode="local", vllm_executable="vllm-not-installed-here")
    with pytest.raises(ServingError, match="vLLM is not installed here: no 'vllm-not-installed-here'"):
        with missing.serve("all", weights):
            pass


def test_local_mode_answers_the_asset_through_file_urls(roots, tmp_path):
    data_root, storage_root, weights = roots
    storage = PipelineStorage(data_root=str(data_root), storage_root=str(storage_root))
    server = local_answer_server(
        storage, tmp_path, image_transport=FILE_URL, approved_credentialed_datasets=list(DATASETS)
    )
    result = run_answers(storage, server, max_samples=1)
    assert result.success, failure_message(result)
    log = (StorageLayout(storage_root).answers_dir("all") / "server.log").read_text()
    assert f"serving {served_model_name('all', weights)}" in log
    outcome = json.loads(StorageLayout(storage_root).generation_record("all").read_text())
    assert outcome["status"] == "generated" and outcome["tasks"]["classification"]["rows"] == 1


def test_commands_for_vllm_and_slurm(tmp_path):
    command = vllm_command(
        "vllm", tmp_path / "final", "radvlm-all-abc", "0.0.0.0", "$port", ["--dtype", "bfloat16"], tmp_path
    )
    assert command[:4] == ["vllm", "serve", str(tmp_path / "final"), "--served-model-name"]
    assert command[-4:] == ["--allowed-local-media-path", str(tmp_path), "--dtype", "bfloat16"]
    script = serving_sbatch_script(
        ServingJobSpec(
            job_name="radvlm-serve-all",
            command=command,
            address_path=tmp_path / "address",
            log_path=tmp_path / "server.log",
            workdir=tmp_path,
            gpus_per_node=1,
            cpus_per_task=8,
            time_limit="04:00:00",
        )
    )
    assert "#SBATCH --gpus-per-node=1\n" in script and "port=$((20000 + SLURM_JOB_ID % 20000))" in script
    assert f'echo "$(hostname):$port" > {tmp_path / "address"}' in script
    assert "exec vllm serve" in script and '--port "$port"' in script and "VLLM_API_KEY" not in script


def test_answer_server_from_the_environment(monkeypatch):
    from dagster import build_resources

    from resources import build_resources as resources_from_environment

    for name, value in {
        "RADVLM_SERVING_MODE": "url",
        "RADVLM_SERVING_URL": "http://gpu-node:8000/v1",
        "RADVLM_SERVING_API_KEY": "sk-serving-secret",
        "RADVLM_SERVING_APPROVED_DATASETS": "mimic_cxr, chexpert",
        "RADVLM_SERVING_VLLM_ARGS": "--dtype bfloat16 --max-model-len 8192",
    }.items():
        monkeypatch.setenv(name, value)
    configured = resources_from_environment()
    with build_resources({key: configured[key] for key in ("storage", "answer_server")}) as built:
        server = built.answer_server
        settings = server.client_settings()
    assert (server.mode, server.url, server.vllm_args) == (
        "url",
        "http://gpu-node:8000/v1",
        ["--dtype", "bfloat16", "--max-model-len", "8192"],
    )
    sending = answer_settings(settings, ServedEndpoint(server.url, "radvlm-all-x", api_key=server.api_key), 8)
    assert sending.api_key == "sk-serving-secret" and "sk-serving-secret" not in repr(sending)
    assert settings.approved_credentialed_datasets == ("mimic_cxr", "chexpert")
