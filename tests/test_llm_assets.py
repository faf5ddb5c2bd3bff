"""The two LLM assets materialized by Dagster on tiny source tables, offline and against a local endpoint."""

from __future__ import annotations

import shutil

import polars as pl
import pytest
from dagster import DagsterInstance, EnvVar, materialize
from fake_openai_server import FakeOpenAI
from llm_tables import write_sources

from assets import llm_stages
from assets.llm_stages import conversations_asset, reports_without_priors, stage_code_version
from radvlm_pipeline.llm import conversations, prior_removal
from radvlm_pipeline.llm.outputs import LLM_QUARANTINE_SCHEMA
from radvlm_pipeline.llm.prompts import PromptTemplate
from radvlm_pipeline.schema import CLEAN_REPORTS_SCHEMA, CONVERSATIONS_SCHEMA
from resources.llm import LLMResource
from resources.storage import PipelineStorage

KEY_ENV = "RADVLM_TEST_LLM_KEY"
KEY = "sk-test-secret-9f8e7d6c5b4a"
ASSETS = [reports_without_priors, conversations_asset]


ALL_APPROVED = [*prior_removal.SOURCES, *conversations.GROUNDED_SOURCES]


def endpoint_resources(root, server: FakeOpenAI, **llm_config):
    """The resources for an endpoint at the fake server, every dataset approved unless said otherwise."""
    defaults = {"api_key": "k", "approved_credentialed_datasets": ALL_APPROVED}
    return resources_for(root, backend="openai", base_url=server.base_url, **(defaults | llm_config))


def resources_for(root, **llm_config):
    storage = PipelineStorage(data_root=str(root), storage_root=str(root))
    return {"storage": storage, "llm": LLMResource(storage=storage, **llm_config)}


def materialization(result, name):
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == name]
    return event.materialization.metadata


def test_offline_materialization_writes_outputs_and_quarantine(tmp_path):
    write_sources(tmp_path)
    result = materialize(ASSETS, resources=resources_for(tmp_path))
    assert result.success
    out = tmp_path / "llm"
    clean = pl.read_parquet(out / "reports_without_priors.parquet")
    talks = pl.read_parquet(out / "conversations.parquet")
    assert clean.schema == CLEAN_REPORTS_SCHEMA and talks.schema == CONVERSATIONS_SCHEMA
    assert pl.read_parquet(out / "conversations_quarantine.parquet").schema == LLM_QUARANTINE_SCHEMA
    assert clean.height == 9 and set(clean["backend"]) == {"offline-rules"}
    assert talks.height == 8 and set(talks["split"]) == {"train", "test"}
    metadata = materialization(result, "conversations")
    assert metadata["backend"].value == "offline-rules" and metadata["llm_model"].value == "offline-rules"
    assert metadata["llm_offline_answers"].value == 8 and metadata["llm_requests_sent"].value == 0
    assert "| facts given |" in metadata["sample_inputs_and_outputs"].value
    assert not (out / "cache.sqlite").exists()  # the offline backend needs no cache


def test_conversation_caps_and_test_model_come_from_config(tmp_path):
    write_sources(tmp_path)
    with FakeOpenAI() as server:
        resources = endpoint_resources(tmp_path, server, test_model="gpt-4o")
        config = {"ops": {"conversations": {"config": {"standard_caps": {"train": 2, "test": 0}}}}}
        result = materialize(ASSETS, resources=resources, run_config=config)
        models = [r.model for r in server.chat_requests[9:]]  # after the 9 prior-removal requests
    metadata = materialization(result, "conversations")
    assert metadata["standard_left_out_by_cap"].value == {"train": 1, "test": 1}
    assert metadata["backend_by_split"].value == {"test": ["openai:gpt-4o"], "train": ["openai:gpt-4o-mini"]}
    assert sorted(models) == ["gpt-4o"] * 2 + ["gpt-4o-mini"] * 4  # 2 grounded test, 2 + 2 train


def test_endpoint_materialization_is_cached_keeps_the_key_secret_and_reruns_for_free(
    tmp_path, monkeypatch, capfd
):
    write_sources(tmp_path)
    monkeypatch.setenv(KEY_ENV, KEY)
    instance = DagsterInstance.ephemeral()
    with FakeOpenAI() as server:
        resources = endpoint_resources(
            tmp_path,
            server,
            api_key=EnvVar(KEY_ENV),
            concurrency=4,
        )
        first = materialize(ASSETS, resources=resources, instance=instance)
        assert first.success
        calls = len(server.chat_requests)
        assert calls == 9 + 8 and {r.authorization for r in server.chat_requests} == {f"Bearer {KEY}"}
        clean_meta = materialization(first, "reports_without_priors")
        assert clean_meta["llm_answers_recorded"].value == 9 and clean_meta["llm_tokens_in"].value > 0
        assert clean_meta["backend"].value == "openai:gpt-4o-mini"
        assert isinstance(clean_meta["llm_estimated_cost_usd"].value, float)
        assert "llm_latency_p90_s" in clean_meta

        second = materialize(ASSETS, resources=resources, instance=instance)
        assert second.success and len(server.chat_requests) == calls
        for name, hits in (("reports_without_priors", 9), ("conversations", 8)):
            assert materialization(second, name)["llm_requests_sent"].value == 0
            assert materialization(second, name)["llm_cache_hits"].value == hits
    everything_logged = "".join(
        str(record) for run in (first, second) for record in instance.all_logs(run.run_id)
    )
    assert KEY not in everything_logged and KEY not in "".join(capfd.readouterr())
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_run_config_overrides_the_environment_field_by_field(tmp_path, monkeypatch):
    write_sources(tmp_path)
    storage = PipelineStorage(data_root=str(tmp_path), storage_root=str(tmp_path))
    with FakeOpenAI() as server:
        for name, value in {
            "RADVLM_LLM_BACKEND": "openai",
            "RADVLM_LLM_BASE_URL": server.base_url,
            "RADVLM_LLM_API_KEY": KEY,
            "RADVLM_LLM_APPROVED_DATASETS": ",".join(prior_removal.SOURCES),
        }.items():
            monkeypatch.setenv(name, value)
        result = materialize(
            [reports_without_priors],
            resources={"storage": storage, "llm": LLMResource.from_environment(storage)},
            run_config={"resources": {"llm": {"config": {"timeout_s": 7.0, "concurrency": 2}}}},
        )
        assert len(server.chat_requests) == 9 and server.max_in_flight <= 2
        assert {r.authorization for r in server.chat_requests} == {f"Bearer {KEY}"}
    metadata = materialization(result, "reports_without_priors")
    assert metadata["llm_backend"].value == "openai" and metadata["llm_model"].value == "gpt-4o-mini"
    assert metadata["backend"].value == "openai:gpt-4o-mini"
    clean = pl.read_parquet(tmp_path / "llm" / "reports_without_priors.parquet")
    assert set(clean["backend"]) == {"openai:gpt-4o-mini"}


def step_events(result, event_type: str) -> list:
    return [e for e in result.all_events if e.event_type_value == event_type]


def test_governance_refuses_before_any_request_and_is_not_retried(tmp_path):
    write_sources(tmp_path)
    with FakeOpenAI() as server:
        resources = endpoint_resources(tmp_path, server, approved_credentialed_datasets=["mimic_cxr"])
        result = materialize([reports_without_priors], resources=resources, raise_on_error=False)
        assert not result.success and server.api_calls == []
    assert step_events(result, "STEP_UP_FOR_RETRY") == []  # LLM_STEP_RETRY would retry it twice
    [failure] = step_events(result, "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "GovernanceError" in message and "'chexpert_plus'" in message
    assert "approved_credentialed_datasets" in message
    assert not (tmp_path / "llm" / "reports_without_priors.parquet").exists()


def test_a_rejected_key_fails_at_once_without_leaking_it(tmp_path, monkeypatch):
    write_sources(tmp_path)
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeOpenAI() as server:
        server.always("401")
        resources = endpoint_resources(
            tmp_path,
            server,
            api_key=EnvVar(KEY_ENV),
            concurrency=1,
            approved_credentialed_datasets=list(prior_removal.SOURCES),
        )
        result = materialize([reports_without_priors], resources=resources, raise_on_error=False)
        assert len(server.chat_requests) == 1
    assert not result.success and step_events(result, "STEP_UP_FOR_RETRY") == []
    [failure] = step_events(result, "STEP_FAILURE")
    assert "EndpointConfigurationError" in str(failure.event_specific_data.error)
    assert KEY not in str(failure.event_specific_data.error)


def test_missing_sources_are_skipped_and_said_except_mimic_cxr(tmp_path):
    write_sources(tmp_path)
    for source in ("chexpert_plus", "padchest_gr"):
        shutil.rmtree(tmp_path / "sources" / source)
    result = materialize(ASSETS, resources=resources_for(tmp_path))
    assert (
        "materialize 'padchest_gr' first"
        in materialization(result, "conversations")["sources_skipped"].value["padchest_gr"]
    )
    assert set(pl.read_parquet(tmp_path / "llm" / "conversations.parquet")["source"]) == {
        "mimic_cxr",
        "ms_cxr",
    }
    assert set(materialization(result, "reports_without_priors")["sources_skipped"].value) == {
        "chexpert_plus"
    }

    shutil.rmtree(tmp_path / "sources" / "mimic_cxr")
    failed = materialize([reports_without_priors], resources=resources_for(tmp_path), raise_on_error=False)
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "materialize 'mimic_cxr' first" in str(failure.event_specific_data.error)


def test_editing_a_prompt_changes_the_code_version(tmp_path, monkeypatch):
    before = stage_code_version(prior_removal)
    edited = tmp_path / "prior_removal.md"
    edited.write_text(
        prior_removal.PROMPT.system + "\nOne more rule.\n--- user ---\n" + prior_removal.PROMPT.user
    )
    monkeypatch.setattr(prior_removal, "PROMPT", PromptTemplate.from_file(edited))
    assert stage_code_version(prior_removal) != before
    assert reports_without_priors.code_versions_by_key[reports_without_priors.key] == before
    assert conversations_asset.group_names_by_key[conversations_asset.key] == "llm"


@pytest.mark.parametrize("asset", llm_stages.llm_assets)
def test_assets_declare_their_upstream_sources(asset):
    upstream = {key.path[-1] for key in asset.asset_deps[asset.key]}
    expected = {
        "reports_without_priors": {"mimic_cxr", "chexpert_plus"},
        "conversations": {"reports_without_priors", "mimic_cxr", "ms_cxr", "padchest_gr"},
    }
    assert upstream == expected[asset.key.path[-1]]
