"""A deterministic generator of synthetic chest X-ray datasets in the seven datasets' released layouts.

The real datasets are credentialed and cannot ship with the project; this sample lets the same readers,
stages and tests run offline. ``python -m radvlm_pipeline.sample_data --help`` for the command.
"""
