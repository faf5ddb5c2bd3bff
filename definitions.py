"""The code location: every asset, check, resource, sensor and schedule of radvlm-pipeline.

Loaded by `dagster dev -w workspace.yaml` and `dagster asset materialize -f definitions.py`. Each area
declares its own definitions (`assets/definitions.py`, `sensors/definitions.py`); this file merges them
and adds the resources, chosen per environment. How it runs by itself (new releases, re-evaluation):
the `sensors` package; pools, retries and automation conditions: `assets/policies.py`.
"""

from dagster import Definitions

# Modules, not their Definitions objects: `dagster ... -f definitions.py` refuses a file with more than
# one Definitions at module scope.
from assets import definitions as asset_area
from resources import build_resources
from sensors import definitions as sensor_area

# The observed dataset folders (the sensors' area) come first: the assets' order is the data's.
defs = Definitions.merge(sensor_area.defs, asset_area.defs, Definitions(resources=build_resources()))
