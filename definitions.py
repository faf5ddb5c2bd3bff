"""The code location: every asset, check, resource, sensor and schedule of radvlm-pipeline.

Loaded by `dagster dev -w workspace.yaml` and `dagster asset materialize -f definitions.py`. Each area
declares its own definitions (`assets/definitions.py`, `sensors/definitions.py`); this file merges them
and adds the resources, chosen per environment. How it runs by itself (new releases, re-evaluation):
the `sensors` package; pools, retries and automation conditions: `assets/policies.py`.
"""

from dagster import Definitions

from assets.definitions import defs as asset_defs
from resources import build_resources
from sensors.definitions import defs as sensor_defs

# The observed dataset folders (sensor_defs) come first: the assets' order is the data's.
defs = Definitions.merge(sensor_defs, asset_defs, Definitions(resources=build_resources()))
