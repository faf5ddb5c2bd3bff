"""A new MIMIC-CXR release, end to end: the sensor notices it, the automation conditions re-run what
depends on MIMIC-CXR, of the corpus only the partitions whose rows the new study changed, and the LLM is
asked only about the new study.

The daemon's part is played by the test (``automation_daemon``): it ticks the sensor, executes the
observation it requests, evaluates the automation conditions as the automation sensor does and executes
what they request, one run per request, until they request nothing more.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from automation_daemon import GRAPH, Daemon, stale_assets
from dagster import AssetKey, DagsterInstance, build_sensor_context
from fake_openai_server import FakeOpenAI

from assets.policies import RAW_DATASETS
from definitions import defs
from radvlm_pipeline.datasets import DATASETS, MIMIC_CXR
from radvlm_pipeline.layout import BUNDLED_SAMPLE_ROOT
from radvlm_pipeline.llm import conversations, prior_removal
from radvlm_pipeline.sample_data import mimic_cxr
from resources.llm import LLMResource
from resources.storage import PipelineStorage
from sensors.dataset_releases import CHANGED_DATASETS_TAG, dataset_releases

SEED = 0  # the bundled sample's seed
CORPUS = AssetKey("corpus")
# What `make demo` builds before training: every materializable asset upstream of the fine-tuning.
UP_TO_THE_CORPUS = [
    *(AssetKey(key) for key in DATASETS),
    AssetKey("reports_without_priors"),
    AssetKey("conversations"),
    AssetKey("corpus_eval_sets"),
]
AFTER_THE_CORPUS = [AssetKey("corpus_catalog"), AssetKey("corpus_llava_export")]


def add_mimic_study(data_root: Path) -> mimic_cxr.MimicStudy:
    """A new MIMIC-CXR release: the sample's studies plus one train study of another seed's plan, written
    by the sample generator (metadata, split and label rows, report, JPEGs)."""
    studies = mimic_cxr.plan(SEED)
    known = {s.subject_id for s in studies}
    new = next(
        s
        for s in mimic_cxr.plan(SEED + 1)
        if s.split == "train" and s.frontal_images() and s.subject_id not in known
    )
    mimic_cxr.write(MIMIC_CXR.root(data_root), [*studies, new], SEED, dirty=False)
    return new


@pytest.mark.slow
def test_new_mimic_release_reruns_what_depends_on_it_and_asks_the_llm_only_about_new_rows(tmp_path):
    data_root = tmp_path / "data"
    shutil.copytree(BUNDLED_SAMPLE_ROOT, data_root)
    storage = PipelineStorage(data_root=str(data_root), storage_root=str(tmp_path / "storage"))
    approved = list(prior_removal.SOURCES) + list(conversations.GROUNDED_SOURCES)
    instance = DagsterInstance.ephemeral()
    with FakeOpenAI() as server:
        llm = LLMResource(
            storage=storage,
            backend="openai",
            base_url=server.base_url,
            api_key="unused",
            concurrency=8,
            approved_credentialed_datasets=approved,
        )
        daemon = Daemon(instance, {**defs.resources, "storage": storage, "llm": llm})

        # The state `make demo` leaves up to the corpus, with the folders observed.
        daemon.execute([RAW_DATASETS])
        daemon.execute(UP_TO_THE_CORPUS)
        for partition in GRAPH.get(CORPUS).partitions_def.get_partition_keys():
            daemon.execute([CORPUS], partition)
        daemon.execute(AFTER_THE_CORPUS)
        assert daemon.tick_automation() == {}  # the first evaluation starts from here
        sensor_context = build_sensor_context(instance=instance, resources={"storage": storage})
        assert dataset_releases(sensor_context).skip_message.startswith("no dataset folder")
        calls_before = len(server.chat_requests)
        daemon.ran.clear()

        new_study = add_mimic_study(data_root)
        request = dataset_releases(build_sensor_context(instance=instance, resources={"storage": storage}))
        assert request.tags[CHANGED_DATASETS_TAG] == "mimic_cxr"
        daemon.execute([RAW_DATASETS], tags=request.tags)
        ticks = daemon.run_automation_until_quiet()
        new_requests = server.chat_requests[calls_before:]
        assert stale_assets(instance) == {}

    assert ticks == 3  # sources to evaluation sets; the corpus partitions; the catalog and export
    assert dict(daemon.ran) == {
        "raw_datasets": [None],
        **{
            name: [None]
            for name in (
                "mimic_cxr",
                "chest_imagenome",
                "ms_cxr",  # the two that annotate MIMIC-CXR images
                "reports_without_priors",
                "conversations",
                "corpus_eval_sets",
                "corpus_catalog",
                "corpus_llava_export",
            )
        },
        # The Table 1 rows the new train study adds to (its images, labels, report, conversations); not
        # Chest ImaGenome's or MS-CXR's, which hold no scene graph or phrase of it, though they re-ran.
        "corpus": [
            "classification__mimic_cxr",
            "conversation__mimic_cxr",
            "report_generation__mimic_cxr",
        ],
    }

    # The LLM was asked about the new study only: its report, and a conversation per new frontal image.
    storage_root = tmp_path / "storage"
    new_images = {image.dicom_id for image in new_study.frontal_images()}
    talks = pl.read_parquet(storage_root / "llm" / "conversations.parquet")
    assert set(talks.filter(pl.col("study_id") == new_study.study_id)["image_id"]) == new_images
    clean = pl.read_parquet(storage_root / "llm" / "reports_without_priors.parquet")
    [new_report] = clean.filter(pl.col("study_id") == new_study.study_id)["report"].to_list()
    cleaning = [r.user_message for r in new_requests if r.user_message.startswith("Report:")]
    assert len(cleaning) == 1 and new_report in cleaning[0]
    assert len(new_requests) == 1 + len(new_images)
    # The new rows reached the corpus: the new study's report is a report generation target.
    shards = pl.read_parquet(
        storage_root / "corpus" / "shards" / "report_generation__mimic_cxr" / "*.parquet"
    )
    assert shards.filter(pl.col("image_path").str.contains(new_study.study_id)).height == len(new_images)
