"""Every stage's assets and asset checks, for the code location (``definitions.py``) to merge.

Data flows one way: raw dataset folders -> sources -> llm -> corpus -> training -> evaluation.
"""

from dagster import Definitions

from assets import corpus, evaluation, finetune, llm_stages, sources

defs = Definitions(
    assets=[
        *sources.source_assets,
        *llm_stages.llm_assets,
        *corpus.corpus_assets,
        *finetune.build_finetune_assets(corpus.corpus),
        *evaluation.evaluation_assets,
    ],
    asset_checks=[*sources.source_checks, *corpus.corpus_checks],
)
