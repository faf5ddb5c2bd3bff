"""Fine-tuning: the base model, and one fine-tuned model per training recipe (the paper's Table 6).

``build_finetune_assets(corpus)`` makes both assets for the corpus asset the definitions use, so the
recipe partitions depend on exactly the corpus partitions of their tasks: re-materializing one corpus
partition makes only the models trained on it stale.
"""

import base64
from collections.abc import Sequence
from pathlib import Path

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    MultiPartitionKey,
    StaticPartitionMapping,
    StaticPartitionsDefinition,
    asset,
)
from pydantic import Field

from assets.policies import TRAINING_POOL, TRAINING_RETRY
from assets.versions import code_version
from radvlm_pipeline.layout import RunLayout
from radvlm_pipeline.training import config as training_config
from radvlm_pipeline.training.base_model import current_base_model, prepare_base_model
from radvlm_pipeline.training.config import PAPER, PROFILES, TrainConfig, profile_settings
from radvlm_pipeline.training.recipes import (
    RECIPES,
    recipe_train_config,
    rows_per_task,
    shard_task,
    shards_fingerprint,
)
from radvlm_pipeline.training.report import loss_curve_png, read_metrics
from resources.launchers import TrainingLauncher
from resources.storage import PipelineStorage

RECIPE_PARTITIONS = StaticPartitionsDefinition(list(RECIPES))
# What a reader compares between runs (the rest of the config is in the YAML the metadata links to).
RECORDED_SETTINGS = (
    "epochs",
    "max_steps",
    "global_batch_size",
    "micro_batch_size",
    "lr_vision",
    "lr_language",
    "warmup_ratio",
    "max_length",
    "group_by_length",
    "seed",
)
TRAINING_SOURCES = Path(training_config.__file__).parent
# The training code, its defaults and the shipped DeepSpeed configs.
CODE_VERSION = code_version(
    *sorted([*TRAINING_SOURCES.glob("*.py"), *TRAINING_SOURCES.glob("deepspeed/*.json")]), names=True
)


class BaseModelConfig(Config):
    path: str = Field(
        default="",
        description="A Hugging Face-format LLaVA-OneVision directory (e.g. llava-onevision-qwen2-7b-si-hf). "
        "Empty: build the embedded tiny model under <storage_root>/models/base.",
    )


def _paper(name: str) -> str:
    return f"None: the profile's value (paper: {TrainConfig.__dataclass_fields__[name].default})"


class FinetuneConfig(Config):
    """The settings a run is usually changed by: a profile, and any value set here on top of it."""

    profile: str = Field(
        default=PAPER,
        description=f"One of {sorted(PROFILES)}: 'paper' keeps the paper's settings (real runs); 'demo' "
        "is for the embedded tiny random model on the bundled sample (higher rates, several epochs, "
        "short sequences).",
    )
    epochs: float | None = Field(default=None, description=_paper("epochs"))
    max_steps: int | None = Field(
        default=None, description="stop after this many steps; None: the whole schedule"
    )
    global_batch_size: int | None = Field(
        default=None,
        description="samples per optimizer step over all processes; accumulation = global / (micro x "
        f"processes). {_paper('global_batch_size')}",
    )
    micro_batch_size: int | None = Field(
        default=None, description=f"per process. {_paper('micro_batch_size')}"
    )
    lr_vision: float | None = Field(default=None, description=_paper("lr_vision"))
    lr_language: float | None = Field(
        default=None, description=f"projector and language model. {_paper('lr_language')}"
    )
    max_length: int | None = Field(default=None, description=_paper("max_length"))
    group_by_length: bool | None = Field(default=None, description=_paper("group_by_length"))
    deepspeed: str | None = Field(default=None, description="zero2, zero3 or a JSON path; None: DDP")
    save_every_steps: int | None = Field(default=None, description=_paper("save_every_steps"))
    num_workers: int | None = Field(default=None, description=_paper("num_workers"))
    seed: int | None = Field(default=None, description=_paper("seed"))

    def settings(self) -> dict:
        """TrainConfig keyword arguments: the profile's values, then every value set here."""
        chosen = {k: v for k, v in self.model_dump().items() if k != "profile" and v is not None}
        return profile_settings(self.profile, **chosen)


def recipe_for_corpus_partition(key: str) -> list[str]:
    """The recipes that train on a corpus partition (``<task>__<source>``, or a task/source multi-key)."""
    task = key.keys_by_dimension["task"] if isinstance(key, MultiPartitionKey) else shard_task(key)
    return [recipe for recipe, tasks in RECIPES.items() if task in tasks]


def corpus_dependency(corpus_key: AssetKey, corpus_partition_keys: Sequence[str] | None) -> AssetDep:
    if corpus_partition_keys is None:
        return AssetDep(corpus_key)
    mapping = {key: set(recipe_for_corpus_partition(key)) for key in corpus_partition_keys}
    return AssetDep(
        corpus_key, partition_mapping=StaticPartitionMapping({k: v for k, v in mapping.items() if v})
    )


def build_finetune_assets(corpus: AssetsDefinition | AssetKey) -> list[AssetsDefinition]:
    """``base_model`` and ``finetuned_model`` (partitioned by recipe) downstream of the corpus asset."""
    if isinstance(corpus, AssetsDefinition):
        corpus_key = corpus.key
        partitions = corpus.partitions_def
        corpus_keys = partitions.get_partition_keys() if partitions else None
    else:
        corpus_key, corpus_keys = corpus, None

    @asset(
        group_name="training",
        kinds={"pytorch", "huggingface"},
        code_version=CODE_VERSION,
        description="The LLaVA-OneVision directory fine-tuning starts from: a configured path (the real "
        "llava-onevision-qwen2-7b-si) or the embedded tiny model, built from configs with a local tokenizer.",
    )
    def base_model(context: AssetExecutionContext, config: BaseModelConfig, storage: PipelineStorage):
        described = prepare_base_model(storage.storage_path, config.path or None)
        context.log.info(f"base model: {described['path']}")
        return MaterializeResult(
            metadata={
                "path": MetadataValue.path(described["path"]),
                "built_tiny_model": described["built_tiny_model"],
                "architectures": ", ".join(described["architectures"]),
                "text_hidden_size": described["text_hidden_size"],
                "text_layers": described["text_layers"],
            },
            data_version=DataVersion(described["fingerprint"]),
        )

    @asset(
        group_name="training",
        kinds={"pytorch", "deepspeed"},
        partitions_def=RECIPE_PARTITIONS,
        deps=[corpus_dependency(corpus_key, corpus_keys), base_model],
        code_version=CODE_VERSION,
        pool=TRAINING_POOL,
        retry_policy=TRAINING_RETRY,
        description="LLaVA-OneVision fully fine-tuned on one recipe's corpus rows (all = RadVLM, or one task "
        "family for the Table 6 ablations), trained by the training_launcher resource (local or Slurm).",
    )
    def finetuned_model(
        context: AssetExecutionContext,
        config: FinetuneConfig,
        storage: PipelineStorage,
        training_launcher: TrainingLauncher,
    ):
        recipe = context.partition_key
        base = current_base_model(storage.storage_path)
        run_config = recipe_train_config(
            recipe, storage.storage_path, storage.data_path, base["path"], **config.settings()
        )
        run = RunLayout(Path(run_config.output_dir))
        config_path = run_config.to_yaml(run.config)
        shard_files = [Path(f) for f in run_config.shard_files]
        counts = rows_per_task(shard_files)
        # What the weights depend on: settings, base model and the corpus bytes.
        version = f"{run_config.config_hash()}-{base['fingerprint']}-{shards_fingerprint(shard_files)}"
        context.log.info(f"training {recipe} on {counts} with {training_launcher.describe()}")
        reported = training_launcher.launch(
            context, config_path, run.job(context.run_id), extras={"recipe": recipe}
        )
        metrics = read_metrics(run.metrics)
        png = base64.b64encode(loss_curve_png(metrics, f"{recipe}: training loss")).decode()
        return MaterializeResult(
            metadata={
                **reported,
                "recipe": recipe,
                "rows_per_task": MetadataValue.json(counts),
                "rows": sum(counts.values()),
                "dagster/row_count": sum(counts.values()),
                "base_model": MetadataValue.path(base["path"]),
                "config_hash": run_config.config_hash(),
                "config": MetadataValue.path(str(config_path)),
                "profile": run_config.profile,
                "settings": MetadataValue.json(
                    {name: getattr(run_config, name) for name in RECORDED_SETTINGS}
                ),
                "launcher": training_launcher.describe(),
                "loss_curve": MetadataValue.md(f"![loss curve](data:image/png;base64,{png})"),
                "output_path": MetadataValue.path(str(run.final)),
            },
            data_version=DataVersion(version),
        )

    return [base_model, finetuned_model]
