"""How the pipeline is operated: the observed dataset folders and the sensor that notices a new release
(``dataset_releases``), the sensor that evaluates the assets' automation conditions (``automation``), the
backfill jobs (``jobs``), the periodic re-evaluation schedule (``schedules``) and the command line for
partitions that checks keys and waits for a backfill's runs (``cli``).

Imports run one way: these modules import ``assets``, never the reverse, which is why the policies the
assets declare (automation conditions, concurrency pools, retries) live in ``assets.policies``.
"""
