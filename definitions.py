"""The code location: every asset, check, resource, sensor and schedule of radvlm-pipeline.

Loaded by `dagster dev -w workspace.yaml` and `dagster asset materialize -f definitions.py`.
"""

from dagster import Definitions

from assets import sources
from resources import build_resources

defs = Definitions(
    assets=[*sources.source_assets],
    asset_checks=[*sources.source_checks],
    resources=build_resources(),
)
