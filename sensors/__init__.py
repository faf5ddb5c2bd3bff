"""How the pipeline is operated: the observed dataset folders and the sensor that notices a new release
(``dataset_releases``), the periodic re-evaluation schedule (``schedules``), and the policies the assets
declare (``policies``: automation conditions, concurrency pools, retries).

Nothing is imported here, so that asset modules can import ``sensors.policies`` while the sensor and
schedule modules import the assets.
"""
