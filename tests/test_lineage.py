"""Lineage that never lies, at the Dagster level: a correction made in place in a dataset folder (a report
rewritten, a box moved, a label value flipped) is noticed, reaches the LLM only for what it changed,
rebuilds exactly the corpus partitions whose rows it changed, then the catalog and export, and at every
step each asset's stale flag, as the UI computes it, says what is out of date and why.

One instance goes through the corrections in turn, each from the quiet state the previous one left: a
report, a scene-graph box, a report again but rebuilt by hand before the sensor looks, a training label,
a test label (the evaluation sets change, no training row does). A fine-tuned recipe and the oracle's
answers are built at the start, so the stale flags of training and evaluation are checked too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from automation_daemon import Daemon, stale_assets
from dagster import AssetKey, DagsterInstance, build_sensor_context
from fake_openai_server import FakeOpenAI

from assets.policies import RAW_DATASETS
from definitions import defs
from radvlm_pipeline.datasets import CHEST_IMAGENOME, CHEXPERT, DATASETS, MIMIC_CXR
from radvlm_pipeline.layout import BUNDLED_SAMPLE_ROOT, StorageLayout
from radvlm_pipeline.llm import conversations, prior_removal
from resources.launchers import LocalTrainingLauncher
from resources.llm import LLMResource
from resources.storage import PipelineStorage
from sensors.dataset_releases import CHANGED_DATASETS_TAG, dataset_releases

CORPUS = AssetKey("corpus")
RECIPE = "classification"  # trained on classification__mimic_cxr and classification__chexpert
UP_TO_THE_CORPUS = [
    *(AssetKey(key) for key in DATASETS),
    AssetKey("reports_without_priors"),
    AssetKey("conversations"),
    AssetKey("corpus_eval_sets"),
]
# What a change to MIMIC-CXR's folder rebuilds in one run: the sources on its images, the LLM stages, the
# evaluation sets.
MIMIC_CHAIN = [
    "chest_imagenome",
    "conversations",
    "corpus_eval_sets",
    "mimic_cxr",
    "ms_cxr",
    "reports_without_priors",
]
ONE_TRAINING_STEP = {
    "ops": {"finetuned_model": {"config": {"max_steps": 1, "global_batch_size": 2, "micro_batch_size": 2}}}
}


def partition_rows(storage: StorageLayout, key: str) -> pl.DataFrame:
    return pl.read_parquet(storage.corpus.partition(key) / "*.parquet")


def report_answers(storage: StorageLayout, study: str) -> list[str]:
    """The report generation targets of a MIMIC-CXR study's images, as the corpus holds them."""
    rows = partition_rows(storage, "report_generation__mimic_cxr")
    return [
        turns[-1]["value"]
        for turns in rows.filter(pl.col("image_path").str.contains(f"/s{study}/"))["conversation"]
    ]


def new_draw(*partitions: str) -> dict[str, list[str]]:
    return {f"corpus[{p}]": [f"has a new dependency data version: corpus_inputs[{p}]"] for p in partitions}


def new_rows(*partitions: str) -> dict[str, list[str]]:
    return {"corpus_catalog": sorted(f"has a new dependency data version: corpus[{p}]" for p in partitions)}


class Pipeline:
    """The sample pipeline built as `make demo` leaves it, with one recipe trained, and the release sensor."""

    def __init__(self, tmp_path: Path, server: FakeOpenAI):
        self.data_root = tmp_path / "data"
        shutil.copytree(BUNDLED_SAMPLE_ROOT, self.data_root)
        self.storage = PipelineStorage(data_root=str(self.data_root), storage_root=str(tmp_path / "storage"))
        self.server = server
        llm = LLMResource(
            storage=self.storage,
            backend="openai",
            base_url=server.base_url,
            api_key="unused",
            concurrency=8,
            approved_credentialed_datasets=[*prior_removal.SOURCES, *conversations.GROUNDED_SOURCES],
        )
        resources = {
            **defs.resources,
            "storage": self.storage,
            "llm": llm,
            "training_launcher": LocalTrainingLauncher(),
        }
        self.instance = DagsterInstance.ephemeral()
        self.daemon = Daemon(self.instance, resources)

    def build(self) -> None:
        daemon = self.daemon
        daemon.execute([RAW_DATASETS])
        daemon.execute(UP_TO_THE_CORPUS)
        for partition in daemon_partitions():
            daemon.execute([CORPUS], partition)
        daemon.execute([AssetKey("corpus_catalog"), AssetKey("corpus_llava_export")])
        daemon.execute([AssetKey("base_model")])
        daemon.execute([AssetKey("finetuned_model")], RECIPE, run_config=ONE_TRAINING_STEP)
        daemon.execute([AssetKey("eval_answers")], "oracle")
        assert daemon.tick_automation() == {}  # the first evaluation starts from here
        assert stale_assets(self.instance) == {}

    def notice(self, dataset: str) -> None:
        """The release sensor's tick and the observation it requests."""
        context = build_sensor_context(instance=self.instance, resources={"storage": self.storage})
        request = dataset_releases(context)
        assert request.tags[CHANGED_DATASETS_TAG] == dataset
        self.daemon.execute([RAW_DATASETS], tags=request.tags)

    def tick(self) -> dict[str, list[str | None]]:
        """One automation tick, its requests executed; what ran, by asset."""
        requested = self.daemon.tick_automation()
        self.daemon.execute_requests(requested)
        return {
            key.to_user_string(): sorted(requested[key], key=lambda p: p or "")
            for key in sorted(requested, key=AssetKey.to_user_string)
        }

    def correct(
        self, dataset: str, chain: list[str], partitions: list[str], models: dict[str, list[str]]
    ) -> list:
        """After a correction in ``dataset``'s folder, the runs and the stale flags at each step: ``chain``
        is what the first tick rebuilds, ``partitions`` the corpus partitions the second rebuilds and
        ``models`` the stale trained models they leave (nothing trains by itself). Returns the LLM
        requests the correction caused."""
        calls_before = len(self.server.chat_requests)
        self.notice(dataset)
        source = f"has a new dependency data version: raw_datasets[{dataset}]"
        assert stale_assets(self.instance) == {dataset: [source]}
        self.settle(chain, partitions, models)
        return self.server.chat_requests[calls_before:]

    def settle(self, chain: list[str], partitions: list[str], models: dict[str, list[str]]) -> None:
        """The automation from here on, and the stale flags after each tick (see ``correct``)."""
        assert self.tick() == {name: [None] for name in chain}
        assert stale_assets(self.instance) == new_draw(*partitions)

        assert self.tick() == {"corpus": partitions}  # exactly the partitions whose rows changed
        assert stale_assets(self.instance) == {**new_rows(*partitions), **models}

        assert self.tick() == {"corpus_catalog": [None], "corpus_llava_export": [None]}
        assert stale_assets(self.instance) == models
        assert self.tick() == {}


def daemon_partitions() -> list[str]:
    return defs.resolve_asset_graph().get(CORPUS).partitions_def.get_partition_keys()


# --- The corrections ---------------------------------------------------------------------------------------
def rewrite_a_report(data_root: Path, storage: StorageLayout, added: str) -> str:
    """A sentence added to the findings of a MIMIC-CXR train report (of a study MS-CXR does not
    annotate), in place; the study."""
    reports = pl.read_parquet(storage.source_table("mimic_cxr", "reports"))
    annotated = set(pl.read_parquet(storage.source_table("ms_cxr", "images"))["study_id"])
    drawn = set(partition_rows(storage, "report_generation__mimic_cxr")["image_path"])
    study = next(
        s
        for s in reports.filter(pl.col("split") == "train").sort("study_id")["study_id"]
        if s not in annotated and any(f"/s{s}/" in path for path in drawn)
    )
    [path] = MIMIC_CXR.root(data_root).glob(f"files/p*/p*/s{study}.txt")
    text = path.read_text()
    assert "FINDINGS:" in text  # the section the reader keeps
    path.write_text(text.replace("FINDINGS:", f"FINDINGS: {added}", 1))
    return study


def move_a_region_box(data_root: Path, storage: StorageLayout) -> tuple[str, str]:
    """The region box a Chest ImaGenome training row targets, moved in its scene graph, in place (the
    folder's own modification time does not change); (image, region)."""
    row = partition_rows(storage, "anatomical_grounding__chest_imagenome").sort("id").row(0, named=True)
    image = Path(row["image_path"]).stem
    [region] = row["target_labels"]
    path = CHEST_IMAGENOME.root(data_root) / "silver_dataset" / "scene_graph" / f"{image}_SceneGraph.json"
    graph = json.loads(path.read_text())
    [box] = [o for o in graph["objects"] if o["bbox_name"] == region]
    for side in ("x1", "x2", "original_x1", "original_x2"):
        box[side] -= 2
    path.write_text(json.dumps(graph))
    return image, region


def flip_a_label(data_root: Path, storage: StorageLayout) -> tuple[str, str]:
    """A positive CheXpert training label set to 0.0, in place: same size, only the mtime tells; (image
    path, label)."""
    trained = set(partition_rows(storage, "classification__chexpert")["image_path"])
    path = CHEXPERT.root(data_root) / "CheXpert-v1.0-small" / "train.csv"
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    for index, line in enumerate(lines[1:], start=1):
        values = line.rstrip("\n").split(",")
        if values[0] in trained and "1.0" in values[header.index("No Finding") + 1 :]:
            column = values.index("1.0", header.index("No Finding") + 1)
            values[column] = "0.0"
            lines[index] = ",".join(values) + "\n"
            path.write_text("".join(lines))
            return values[0], header[column]
    raise AssertionError("no positive CheXpert training label in the sample")


def flip_a_test_label(data_root: Path, storage: StorageLayout) -> str:
    """A positive label of a CheXpert test image (in the classification evaluation set) set to 0, in
    place; the image's path."""
    evaluated = pl.read_parquet(storage.corpus.eval_set("classification"))["image_path"]
    path = CHEXPERT.root(data_root) / "CheXpert" / "test_labels.csv"
    lines = path.read_text().splitlines(keepends=True)
    for index, line in enumerate(lines[1:], start=1):
        image, *values = line.rstrip("\n").split(",")
        if "1" in values and evaluated.str.ends_with(image).any():
            values[values.index("1")] = "0"
            lines[index] = ",".join([image, *values]) + "\n"
            path.write_text("".join(lines))
            return image
    raise AssertionError("no positive label on an evaluated CheXpert test image in the sample")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_corrections_reach_exactly_what_is_built_from_them_and_the_stale_flags_say_so(tmp_path):
    with FakeOpenAI() as server:
        pipeline = Pipeline(tmp_path, server)
        pipeline.build()
        storage = pipeline.storage.layout

        # A report rewritten: one cleaning prompt, one conversation prompt per image of its study.
        added = "Small right basal atelectasis."
        study = rewrite_a_report(pipeline.data_root, storage, added)
        requests = pipeline.correct(
            "mimic_cxr",
            chain=MIMIC_CHAIN,
            partitions=["conversation__mimic_cxr", "report_generation__mimic_cxr"],
            models={},
        )
        cleaning = [r.user_message for r in requests if r.user_message.startswith("Report:")]
        assert len(cleaning) == 1 and added in cleaning[0]
        talks = pl.read_parquet(storage.llm_output("conversations")).filter(pl.col("study_id") == study)
        assert len(requests) == 1 + talks.height
        answers = report_answers(storage, study)
        assert answers and all(added in answer for answer in answers)

        # A region box moved in a scene graph: no prompt, only the anatomical grounding row.
        image, region = move_a_region_box(pipeline.data_root, storage)
        before = partition_rows(storage, "anatomical_grounding__chest_imagenome")
        requests = pipeline.correct(
            "chest_imagenome",
            chain=["chest_imagenome", "corpus_eval_sets"],
            partitions=["anatomical_grounding__chest_imagenome"],
            models={},
        )
        assert requests == []
        after = partition_rows(storage, "anatomical_grounding__chest_imagenome")
        moved = after.join(before, on="id").filter(pl.col("target_boxes") != pl.col("target_boxes_right"))
        assert moved["image_path"].str.contains(image).all() and moved.height >= 1

        # A report corrected and its source and LLM stages rebuilt by hand, before any sensor looks: the
        # UI says at once which corpus partitions are out of date (and what else), and the automation
        # rebuilds what follows, the corpus partitions once nothing they draw from is due to re-run.
        added = "Mild cardiomegaly."
        study = rewrite_a_report(pipeline.data_root, storage, added)
        by_hand = ["mimic_cxr", "reports_without_priors", "conversations"]
        pipeline.daemon.execute([AssetKey(name) for name in by_hand])
        partitions = ["conversation__mimic_cxr", "report_generation__mimic_cxr"]
        assert stale_assets(pipeline.instance) == {
            "chest_imagenome": ["has a new dependency data version: mimic_cxr"],
            "ms_cxr": ["has a new dependency data version: mimic_cxr"],
            "corpus_eval_sets": sorted(f"has a new dependency data version: {name}" for name in by_hand),
            **new_draw(*partitions),
        }
        pipeline.settle(["chest_imagenome", "corpus_eval_sets", "ms_cxr"], partitions, models={})
        answers = report_answers(storage, study)
        assert answers and all(added in answer for answer in answers)
        # The sensor then notices the folder: one re-read, into the same tables, sets nothing else off.
        calls_before = len(server.chat_requests)
        pipeline.notice("mimic_cxr")
        assert pipeline.tick() == {name: [None] for name in MIMIC_CHAIN}
        assert stale_assets(pipeline.instance) == {}
        assert pipeline.tick() == {}
        assert server.chat_requests[calls_before:] == []

        # A label flipped: no prompt, only classification__chexpert, and the recipe trained on it reads
        # as stale, with the reason, until someone trains it again.
        image_path, label = flip_a_label(pipeline.data_root, storage)
        trained = {
            f"finetuned_model[{RECIPE}]": [
                "has a new dependency data version: corpus[classification__chexpert]"
            ]
        }
        requests = pipeline.correct(
            "chexpert",
            chain=["chexpert", "corpus_eval_sets"],
            partitions=["classification__chexpert"],
            models=trained,
        )
        assert requests == []
        [row] = (
            partition_rows(storage, "classification__chexpert")
            .filter(pl.col("image_path") == image_path)
            .rows(named=True)
        )
        assert label not in row["target_labels"]

        # A label of an evaluated test image corrected: the evaluation set changes, no training row does.
        # No corpus partition re-runs, the catalog and the export do, and the answers of the models on
        # the evaluation sets read as stale.
        flip_a_test_label(pipeline.data_root, storage)
        answers = {"eval_answers[oracle]": ["has a new dependency data version: corpus_eval_sets"]}
        pipeline.notice("chexpert")
        assert pipeline.tick() == {"chexpert": [None], "corpus_eval_sets": [None]}
        catalog = {"corpus_catalog": ["has a new dependency data version: corpus_eval_sets"]}
        assert stale_assets(pipeline.instance) == {**catalog, **answers, **trained}
        assert pipeline.tick() == {"corpus_catalog": [None], "corpus_llava_export": [None]}
        assert stale_assets(pipeline.instance) == {**answers, **trained}
        assert pipeline.tick() == {}
