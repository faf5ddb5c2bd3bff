"""The code location: every asset, check, resource, sensor and schedule of radvlm-pipeline.

Loaded by `dagster dev -w workspace.yaml` and `dagster asset materialize -f definitions.py`.
Data flows one way: sources -> llm -> corpus -> training -> evaluation.
"""

from dagster import Definitions

from assets import corpus, llm_stages, sources
from resources import build_resources

defs = Definitions(
    assets=[*sources.source_assets, *llm_stages.llm_assets, *corpus.corpus_assets],
    asset_checks=[*sources.source_checks, *corpus.corpus_checks],
    resources=build_resources(),
)
